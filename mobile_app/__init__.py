"""On-device runtime (numpy and the standard library only) and the Kivy demo app."""
