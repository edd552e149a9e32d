"""`python -m distill ...` (also under `accelerate launch -m distill ...`)."""
from distill.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
