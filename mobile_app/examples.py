"""Example inputs the demo app offers to tap, taken from the real data sets (SST-2's written back as natural text).

They ship inside the app (the phone has no data folder); tests/test_app_examples.py checks that each one
still appears in /work/shared/data, so they stay real examples and never drift. They are the data sets' own
sentences, two of each class, not ones picked because the model gets them right (the README shows what it answers).
"""
from __future__ import annotations

# SST-2 dev (sst2/dev.tsv) ships lower-cased and PTB-tokenized ("it 's a charming ... ."); the app shows the same
# sentences as a person writes them: capitals and punctuation back in place, nothing else changed (the test checks
# that each one, lower-cased and without spaces, is a dev sentence).
SENTIMENT = (
    "It's a charming and often affecting journey.",
    "It's slow -- very, very slow.",
    "A gorgeous, witty, seductive movie.",
    "I had to look away - this was god awful.",
)

# UCI SMS Spam Collection (sms_spam/SMSSpamCollection).
SPAM = (
    "Had your mobile 11 months or more? U R entitled to Update to the latest colour mobiles with camera for Free! Call The Mobile Update Co FREE on 08002986030",  # noqa: E501 (verbatim from the data set)
    "Nah I don't think he goes to usf, he lives around here though",
    "SIX chances to win CASH! From 100 to 20,000 pounds txt> CSH11 and send to 87575. Cost 150p/day, 6days, 16+ TsandCs apply Reply HL 4 info",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today.",
)

# SQuAD v1.1 dev (squad_v1/dev-v1.1.json): (question, passage) pairs.
_SUPER_BOWL_50 = (
    "Super Bowl 50 was an American football game to determine the champion of the National Football League (NFL) "
    "for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the National "
    "Football Conference (NFC) champion Carolina Panthers 24–10 to earn their third Super Bowl title. The game was "
    "played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area at Santa Clara, California. As this "
    "was the 50th Super Bowl, the league emphasized the \"golden anniversary\" with various gold-themed initiatives, "
    "as well as temporarily suspending the tradition of naming each Super Bowl game with Roman numerals (under which "
    "the game would have been known as \"Super Bowl L\"), so that the logo could prominently feature the Arabic "
    "numerals 50."
)
_WARSAW = (
    "One of the most famous people born in Warsaw was Maria Skłodowska-Curie, who achieved international recognition "
    "for her research on radioactivity and was the first female recipient of the Nobel Prize. Famous musicians include "
    "Władysław Szpilman and Frédéric Chopin. Though Chopin was born in the village of Żelazowa Wola, about 60 km "
    "(37 mi) from Warsaw, he moved to the city with his family when he was seven months old. Casimir Pulaski, a Polish "
    "general and hero of the American Revolutionary War, was born here in 1745."
)
QA = (
    ("Which NFL team represented the AFC at Super Bowl 50?", _SUPER_BOWL_50),
    ("What year was Casimir Pulaski born in Warsaw?", _WARSAW),
    ("Where did Super Bowl 50 take place?", _SUPER_BOWL_50),
)

# What each task's tab is called, in the order the tabs appear.
TASK_TITLES = {"sentiment": "Sentiment", "spam": "Spam", "qa": "Question answering"}
