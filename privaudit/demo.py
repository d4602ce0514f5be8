"""The built-in default data set: voice-assistant utterances generated from templates and slot values.

It exists so that every command runs on a fresh machine with no data file and no network. It is
synthetic, small and easy: use it to try the tool and in CI smoke tests, never as evidence about a
real model. Real audits use the data the model was really trained on.
"""

from __future__ import annotations

import random

from .data import TextDataset

DEFAULT_SIZE = 3500
DEFAULT_SEED = 0

_SLOTS = {
    "artist": [
        "Nina Simone",
        "the Beatles",
        "Miles Davis",
        "Adele",
        "Bob Marley",
        "Daft Punk",
        "Ella Fitzgerald",
        "Radiohead",
        "Shakira",
        "Johnny Cash",
        "Fela Kuti",
        "Bjork",
        "Nick Drake",
        "Aretha Franklin",
    ],
    "song": [
        "Feeling Good",
        "Yesterday",
        "So What",
        "Hello",
        "Redemption Song",
        "One More Time",
        "Summertime",
        "Karma Police",
        "Hips Don't Lie",
        "Hurt",
        "Water No Get Enemy",
        "Hyperballad",
        "Pink Moon",
    ],
    "genre": ["jazz", "rock", "classical", "hip hop", "reggae", "techno", "folk", "soul", "blues", "country"],
    "playlist": ["Sunday Morning", "Road Trip", "Workout Mix", "Chill Vibes", "Dinner Party", "Focus", "Old Gold"],
    "city": ["Paris", "Lagos", "Boston", "Kyoto", "Lima", "Oslo", "Cairo", "Denver", "Mumbai", "Perth", "Quito"],
    "time": [
        "tomorrow",
        "tonight",
        "this weekend",
        "on Friday",
        "next week",
        "in the morning",
        "at noon",
        "this afternoon",
        "on Monday",
        "in two hours",
    ],
    "clock": ["6 am", "7 30", "noon", "8 pm", "half past five", "quarter to nine", "10 15", "midnight"],
    "weather": ["rain", "snow", "sunshine", "a storm", "fog", "wind", "hail"],
    "cuisine": ["Italian", "Thai", "Mexican", "Ethiopian", "Korean", "Greek", "vegan", "Peruvian", "Lebanese"],
    "people": ["two", "three", "four", "five", "six", "eight", "ten"],
    "contact": ["mum", "dad", "Alice", "Tomas", "my sister", "the office", "Priya", "Jonas", "Grandma"],
    "message": [
        "I am running late",
        "see you soon",
        "call me back",
        "dinner is ready",
        "happy birthday",
        "the meeting moved",
        "I landed safely",
        "bring the keys",
    ],
    "item": ["milk", "eggs", "batteries", "coffee", "rice", "tomatoes", "soap", "bread", "apples", "tea"],
    "list": ["shopping", "groceries", "to do", "hardware", "party", "camping"],
    "room": ["kitchen", "bedroom", "living room", "hallway", "office", "garage", "bathroom"],
    "level": ["twenty", "fifty", "eighty", "full", "half", "low"],
}

_TEMPLATES = {
    "PlayMusic": [
        "play {song} by {artist}",
        "put on some {genre}",
        "I want to hear {artist}",
        "play my {playlist} playlist",
        "start some {genre} music please",
        "can you play {song}",
        "shuffle songs by {artist}",
        "play something like {artist}",
    ],
    "GetWeather": [
        "what is the weather in {city} {time}",
        "will there be {weather} in {city}",
        "is it going to {weather} {time}",
        "forecast for {city} {time}",
        "how cold is it in {city}",
        "do I need an umbrella {time}",
        "tell me the weather {time}",
        "will we get {weather} {time}",
    ],
    "BookRestaurant": [
        "book a table for {people} in {city}",
        "reserve a {cuisine} restaurant {time}",
        "find a {cuisine} place for {people} people",
        "I need a table for {people} {time}",
        "make a dinner reservation {time} for {people}",
        "book {cuisine} food near me {time}",
        "get me a table at a {cuisine} restaurant in {city}",
    ],
    "SetAlarm": [
        "set an alarm for {clock}",
        "wake me up at {clock} {time}",
        "alarm at {clock} please",
        "remind me at {clock}",
        "set my alarm to {clock}",
        "I need to get up at {clock}",
        "create an alarm {time} at {clock}",
    ],
    "SendMessage": [
        "text {contact} {message}",
        "send a message to {contact} saying {message}",
        "tell {contact} {message}",
        "message {contact} that {message}",
        "write to {contact} {message}",
        "let {contact} know {message}",
    ],
    "AddToList": [
        "add {item} to my {list} list",
        "put {item} on the {list} list",
        "I need {item} on my list",
        "remember to buy {item}",
        "add {item} and {item} to {list}",
        "put {item} on my {list} list please",
    ],
    "SmartHome": [
        "turn on the lights in the {room}",
        "switch off the {room} lights",
        "dim the {room} to {level}",
        "set the {room} lights to {level}",
        "turn the heating up in the {room}",
        "lights off in the {room} please",
        "make the {room} brighter",
    ],
}


# Requests that name no intent: their label is drawn at random, so a model can only get them right by
# memorising them, as real data's ambiguous and mislabelled utterances make real models do. This is
# what gives the membership-inference demo something to find.
_AMBIGUOUS = [
    "what about {city} {time}",
    "and {contact} too",
    "the one with {artist}",
    "same as before {time}",
    "I meant {item}",
    "do that for the {room}",
    "the {genre} one",
    "not {city}, {city}",
    "about {people} I think",
    "the usual {time}",
]
AMBIGUOUS_FRACTION = 0.15

# Politeness around the request multiplies the distinct utterances a template can give.
_PREFIXES = ["", "", "please ", "hey ", "could you ", "can you ", "okay "]
_SUFFIXES = ["", "", " please", " thanks", " now", " for me"]


def demo_dataset(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> TextDataset:
    """`size` distinct utterances, intents in turn, each a random template with random slot values (seeded).

    About 15% are ambiguous requests whose words do not decide their intent. Utterances are distinct so
    that no held-out example is a copy of a training member.
    """
    rng = random.Random(seed)
    intents = sorted(_TEMPLATES)
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(texts) < size:
        intent = intents[i % len(intents)]
        templates = _AMBIGUOUS if rng.random() < AMBIGUOUS_FRACTION else _TEMPLATES[intent]
        text = rng.choice(_PREFIXES) + _fill(rng.choice(templates), rng) + rng.choice(_SUFFIXES)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(intent)
            i += 1
    return TextDataset(texts, labels)


def _fill(template: str, rng: random.Random) -> str:
    out, rest = [], template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        slot, _, rest = tail.partition("}")
        out.append(head)
        out.append(rng.choice(_SLOTS[slot]))
    out.append(rest)
    return "".join(out)
