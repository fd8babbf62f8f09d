"""Zoo v2: a corpus that forces reading and copying instead of memory, and an out-of-world set built apart.

The synthetic world of ``corpus.py`` has a few hundred people with fixed facts: a model can score well on it by
remembering the world. Here every item is made from **large, varied pools** (``faker`` people, cities, streets and
companies across many locales; ``wordfreq`` vocabulary; random numbers, codes, prices, dates and times) and many
relation templates in ordinary English, so the answer can only come from the passage in front of the model.

Two generators share the code and differ in what they may draw from (``Reading(heldout=False)`` trains,
``Reading(heldout=True)`` evaluates):

- **locales**: the name pools of the held-out generator come from locales never used in training
  (``TRAIN_LOCALES`` vs ``HELDOUT_LOCALES``);
- **relations**: some relations exist only in the held-out generator, and every trained relation keeps one
  fact phrasing and one question phrasing back (``heldout=`` entries of ``RELATIONS``);
- **words**: objects, places, reasons ... are split by a hash of the word into a trained and a held-out part.

So ``Reading(heldout=True)`` measures reading on names, phrasings and words the model never saw. The tokenizer
*does* see every Latin letter (``LETTER_INVENTORY``), so that a name from an unseen locale is not made of byte
tokens the model never learned: covering the script is the tokenizer's job, not memory of the test.

Items:
    Reading(seed).context_qa(n)      {"context", "question", "answer", "relation"}: the answer is a span
    Reading(seed).calculator(n)      tool traces whose operands (1-7 digits, decimals, negatives) are copied
    Reading(seed).unknown_lookup(n)  lookups of people the encyclopedia does not know -> "not found"
    Reading(seed).followup(n)        two-turn chats: the second question is about the first turn's context
    Reading(seed).chat_examples(n)   a mix of the above as message lists (the zoo chat format)
"""
from __future__ import annotations

import hashlib
import random
from functools import lru_cache

from . import formats as F

# Latin-script locales only: the learner types English; names come from anywhere that writes in Latin letters.
TRAIN_LOCALES = ["en_US", "en_GB", "en_IN", "en_NG", "de_DE", "fr_FR", "es_ES", "es_MX", "it_IT", "pt_BR",
                 "nl_NL", "pl_PL", "cs_CZ", "sv_SE", "da_DK", "fi_FI", "tr_TR", "vi_VN", "id_ID", "fil_PH",
                 "yo_NG", "ig_NG", "az_AZ", "de_AT", "fr_CA"]
#: never used in training: the out-of-world set's names and places come from here
HELDOUT_LOCALES = ["hu_HU", "ro_RO", "sk_SK", "hr_HR", "sl_SI", "no_NO", "is_IS", "zu_ZA", "lt_LT", "et_EE",
                   "pt_PT", "es_AR", "sw", "ha_NG", "en_AU", "lv_LV"]

#: every Latin letter with its diacritics, for the tokenizer (script coverage, not memory of names)
LETTER_INVENTORY = "".join(chr(c) for c in list(range(0xC0, 0x250)) + list(range(0x1E00, 0x1F00))
                           if chr(c).isalpha())


def _h(word: str) -> int:
    return int.from_bytes(hashlib.sha1(word.encode()).digest()[:2], "big") % 100


def _split_words(words, heldout: bool, share: int = 20) -> list[str]:
    """``share`` % of the words (by hash) are held out for the out-of-world set."""
    return [w for w in words if (_h(w) < share) == heldout]


# ------------------------------------------------------------------------------------------------ the word lists
THINGS = """violin guitar passport camera laptop umbrella bicycle scarf notebook wallet backpack kettle telescope
microscope trophy lantern compass ring necklace watch helmet skateboard keyboard printer blender suitcase ladder
hammer drill teapot vase painting sculpture mirror blanket pillow rug lamp candle clock radio headphones
microphone trumpet flute cello drum piano harp accordion banjo saxophone tablet charger toolbox sewing-machine
typewriter globe chessboard puzzle kite surfboard tent sleeping-bag fishing-rod tennis-racket football
basketball snowboard skis sledge wheelbarrow shovel rake bucket watering-can birdcage aquarium terrarium
stroller crib wardrobe bookshelf desk armchair sofa stool hammock barbecue grill toaster microwave fridge
freezer dishwasher heater fan projector speaker television router modem camera-bag tripod binoculars magnifier
sunglasses raincoat boots gloves hat jacket sweater dress suit tie medal certificate diary photo-album
letters coins stamps postcards records comics sketchbook paintbrushes easel clay pottery-wheel loom spices
tea-set cutlery jam honey seeds saplings orchids cactus bonsai""".split()
PLACES_IN = """the attic|the basement|the garage|the garden shed|the kitchen drawer|a box under the bed|the hall closet
|the spare room|the car boot|the top shelf|the cellar|a locker at work|the wardrobe|the pantry|the laundry room
|a safe behind the painting|the glovebox|the loft|the porch|the greenhouse|a cupboard in the study|the bathroom
cabinet|a drawer by the door|the back of the van|the storage unit|the office|a chest at the foot of the bed
|the balcony|a crate in the barn|the workshop|a bag by the piano|the bottom drawer|her grandmother's house
|the boathouse|a tin on the mantelpiece|the linen cupboard|the music room|the caravan|the guest room|the studio"""
PLACES_IN = [p.strip().replace("\n", " ") for p in PLACES_IN.replace("\n|", "|").split("|")]
FOODS = """peanuts shellfish milk eggs wheat soy strawberries kiwi sesame mustard celery almonds walnuts cashews
pistachios shrimp crab lobster oysters mussels tomatoes garlic onions chocolate coffee gluten lactose bananas
avocado mango peaches cherries apples pears oranges lemons pineapple coconut oats barley rye corn lentils
chickpeas cinnamon ginger pepper chilli basil coriander mint fish salmon tuna cod pork beef lamb chicken""".split()
INSTRUMENTS = """the violin|the cello|the piano|the drums|the guitar|the bass guitar|the flute|the clarinet|the oboe
|the trumpet|the trombone|the saxophone|the harp|the accordion|the banjo|the ukulele|the mandolin|the organ
|the tuba|the bagpipes|the sitar|the tabla|the djembe|the harmonica|the xylophone|the french horn|the viola"""
INSTRUMENTS = [p.strip() for p in INSTRUMENTS.replace("\n", "").split("|")]
SPORTS = """tennis football chess rugby cricket hockey volleyball basketball badminton squash golf rowing
swimming cycling archery fencing judo karate boxing climbing skiing surfing sailing handball netball baseball
softball curling bowling darts snooker table-tennis wrestling gymnastics athletics triathlon""".split()
SUBJECTS = """mathematics physics chemistry biology history geography music art drama French Spanish German
Latin economics philosophy literature computer-science statistics astronomy geology psychology sociology
law medicine architecture engineering nursing accounting design photography dance""".split()
REASONS = """the roof was leaking|the office was too small|the rent went up|the lift was broken|the river flooded
|the old road was closed|the school moved to a new building|the heating stopped working|there was a fire in the
kitchen|the lease ran out|the landlord sold the house|the hall was being painted|the bridge was under repair
|the wifi was too slow|the neighbours were too loud|the garden needed the space|the bakery next door expanded
|the floor was uneven|a pipe burst in the wall|the museum needed the room|the windows were replaced|the train
station moved|the market closed early|the power kept going out|the basement got damp|the street was dug up"""
REASONS = [p.strip().replace("\n", " ") for p in REASONS.replace("\n|", "|").split("|")]
COLOURS = """red blue green yellow purple orange white black brown pink grey silver gold turquoise navy maroon
beige teal violet olive crimson amber lavender indigo coral""".split()
ANIMALS = """dog cat parrot rabbit hamster tortoise goldfish horse pony goat donkey ferret guinea-pig budgie
canary snake lizard iguana gecko hedgehog chinchilla rat mouse duck chicken sheep cow llama alpaca""".split()
LANGUAGES = """English French Spanish German Italian Portuguese Dutch Polish Czech Swedish Danish Finnish
Turkish Vietnamese Indonesian Tagalog Yoruba Igbo Hausa Swahili Zulu Hungarian Romanian Slovak Croatian
Norwegian Icelandic Lithuanian Estonian Latvian Greek Russian Arabic Hindi Bengali Japanese Korean Mandarin""".split()
VEHICLES = """the ferry|the bus|the train|the night train|the coach|the tram|the boat|the shuttle|the plane
|the last bus|the express train|the water taxi|the cable car|the first train|the morning ferry"""
VEHICLES = [p.strip() for p in VEHICLES.replace("\n", "").split("|")]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
UNITS = ["minutes", "hours", "days", "weeks", "months", "years"]
FILLERS = ["It was a quiet afternoon.", "Nobody remembers why.", "The weather had been cold all week.",
           "Everyone agreed it was a good idea.", "The street was busy that morning.", "It rained for most of the day.",
           "The meeting ran late again.", "Most of the town was asleep.", "Prices had gone up that year.",
           "The news spread quickly.", "Nobody expected that.", "It was the first time in years.",
           "The neighbours were surprised.", "There was a long queue outside.", "The decision took weeks."]


# wordfreq's list is frequency-ranked web text: it holds profanity, slurs and words about sex, drugs and violence,
# which have no place in a classroom's passages. No maintained library lists them offline, so a short list here:
# parts drop every word that contains them, stems every word that starts with them, words only themselves.
# Filtering before the split keeps every other word on its side (the split hashes each word).
_BLOCK_PARTS = ("fuck", "shit", "bitch", "porn", "cunt", "nigg", "fagg", "whore", "slut", "sex", "rapist", "kill",
                "murder", "nazi")
_BLOCK_STEMS = ("dick", "cock", "pussy", "rape", "masturbat", "orgasm", "dildo", "boob", "tits", "penis", "vagina",
                "horny", "asshole", "bastard", "retard", "hitler", "suicid", "heroin", "cocaine")
_BLOCK_WORDS = {"nude", "nudes", "naked", "anal", "crap", "damn", "slave", "slaves", "drug", "drugs", "weed", "gun",
                "guns"}


def classroom_word(word: str) -> bool:
    """False for a word the block lists above drop (lower-case words, as wordfreq gives them)."""
    return (word not in _BLOCK_WORDS and not word.startswith(_BLOCK_STEMS)
            and not any(part in word for part in _BLOCK_PARTS))


@lru_cache(maxsize=2)
def _vocab(heldout: bool) -> list[str]:
    """Ordinary English words (wordfreq's top list, alphabetic, 4+ letters, none of the blocked ones), split
    trained / held out."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", 30000)[300:] if w.isalpha() and w.isascii() and len(w) >= 4 and classroom_word(w)]
    return _split_words(words, heldout)


@lru_cache(maxsize=2)
def _jobs(heldout: bool) -> list[str]:
    from faker.providers.job.en_US import Provider

    jobs = sorted({j.split(",")[0].strip().lower() for j in Provider.jobs if len(j) < 32 and "(" not in j})
    return _split_words(jobs, heldout)


@lru_cache(maxsize=64)
def _locale_pools(locale: str, n: int = 600) -> dict:
    """Names, cities, streets and companies of one faker locale (built once, deterministically)."""
    from faker import Faker

    fk = Faker(locale)
    fk.seed_instance(12345)
    for provider in fk.providers:
        # it_IT's address provider builds its city list from a set: its order (and so the names drawn) changed
        # with Python's hash seed. Sorted, every run draws the same names.
        if isinstance(getattr(provider, "cities", None), list):
            provider.cities = sorted(provider.cities)

    def many(fn, k):
        out = []
        for _ in range(k):
            try:
                v = fn().strip()
            except Exception:  # a locale without that provider
                return out
            if v and v.isprintable() and len(v) < 40:
                out.append(v)
        return sorted(set(out))

    def first(fn):
        return many(lambda: fn().split()[0], n)

    return {
        "female": first(fk.first_name_female), "male": first(fk.first_name_male),
        "last": many(lambda: fk.last_name().split()[-1], n),
        "city": many(fk.city, n // 2), "street": many(fk.street_name, n // 2),
        "company": many(fk.company, n // 2),
    }


def _render_int(r: random.Random, v: int) -> str:
    return f"{v:,}" if v >= 10000 and r.random() < 0.3 else str(v)


# --------------------------------------------------------------------------------------------------- relations
# Each relation: facts (sentences with {S} the subject and {A} the answer span, {pos}/{pro} pronouns, other slots
# filled by the relation's value maker), questions, and which of them are held out. A relation with
# heldout="all" exists only in the out-of-world generator.
RELATIONS = {
    "keeps": dict(
        facts=["{S} keeps {pos} {thing} in {A}.", "{S} stores {pos} {thing} in {A}.",
               "{S}'s {thing} is kept in {A}.", "The {thing} that belongs to {S} is in {A}.",
               "{S} left {pos} {thing} in {A}."],
        questions=["Where does {S} keep {pos} {thing}?", "Where is {S}'s {thing} kept?",
                   "Where is the {thing} of {S}?", "In which place does {S} keep the {thing}?"],
        heldout_facts=["{S} always puts {pos} {thing} away in {A}."],
        heldout_questions=["Where would I find {S}'s {thing}?"], value="place"),
    "owns": dict(
        facts=["{S} owns {A}.", "{S} has {A}.", "{S} bought {A} last year.",
               "The only thing {S} brought was {A}."],
        questions=["What does {S} own?", "What does {S} have?", "What did {S} buy?"],
        heldout_facts=["{S} recently got {A}."], heldout_questions=["Which object belongs to {S}?"],
        value="a_thing"),
    "lives": dict(
        facts=["{S} lives in {A}.", "{S} has lived in {A} for years.", "{S} lives in {A} with {pos} family.",
               "These days {S} lives in {A}."],
        questions=["Where does {S} live?", "In which city does {S} live?", "Which city is {S} living in?"],
        heldout_facts=["{S} now calls {A} home."], heldout_questions=["What city is {S} based in?"], value="city"),
    "moved_to": dict(
        facts=["{S} moved from {B} to {A} in {year}.", "In {year}, {S} moved from {B} to {A}.",
               "{S} left {B} and moved to {A}."],
        questions=["Where did {S} move to?", "To which city did {S} move?", "Where did {S} go after leaving {B}?"],
        heldout_facts=["{S} relocated to {A}, having grown up in {B}."],
        heldout_questions=["What was {S}'s destination when leaving {B}?"], value="city", extra="from_city"),
    "moved_from": dict(
        facts=["{S} moved from {A} to {B} in {year}.", "In {year}, {S} moved from {A} to {B}.",
               "{S} left {A} and moved to {B}."],
        questions=["Where did {S} move from?", "Which city did {S} leave?", "Where did {S} live before {B}?"],
        heldout_facts=["{S} relocated to {B}, having grown up in {A}."],
        heldout_questions=["Where was {S} before moving to {B}?"], value="city", extra="to_city"),
    "job": dict(
        facts=["{S} works as {A}.", "{S} is {A}.", "{S} has worked as {A} since {year}.",
               "By profession, {S} is {A}."],
        questions=["What does {S} do for a living?", "What is {S}'s job?", "What does {S} work as?"],
        heldout_facts=["{S} earns a living as {A}."], heldout_questions=["What is the profession of {S}?"],
        value="a_job"),
    "employer": dict(
        facts=["{S} works at {A}.", "{S} has a job at {A}.", "{S} is employed by {A}."],
        questions=["Where does {S} work?", "Which company does {S} work for?", "Who employs {S}?"],
        heldout_facts=["{S} joined {A} as an employee."], heldout_questions=["What is the name of {S}'s employer?"],
        value="company"),
    "allergic": dict(
        facts=["{S} is allergic to {A}.", "{S} cannot eat {A} because of an allergy.",
               "{S} has an allergy to {A}."],
        questions=["What is {S} allergic to?", "What can {S} not eat?", "Which food is {S} allergic to?"],
        heldout_facts=["Eating {A} gives {S} a bad reaction."], heldout_questions=["What food should {S} avoid?"],
        value="food"),
    "scored": dict(
        facts=["{S} scored {A} points in the final.", "In the last game, {S} scored {A} points.",
               "{S} finished the match with {A} points."],
        questions=["How many points did {S} score?", "What did {S} score in the final?",
                   "How many points did {S} get?"],
        heldout_facts=["The scoreboard showed {A} points for {S}."],
        heldout_questions=["What was {S}'s score?"], value="small_number"),
    "costs": dict(
        facts=["The {thing} costs {A}.", "The price of the {thing} is {A}.", "{S} paid {A} for the {thing}.",
               "The {thing} was sold for {A}."],
        questions=["How much does the {thing} cost?", "What is the price of the {thing}?",
                   "How much did the {thing} cost?"],
        heldout_facts=["A {thing} like that goes for {A}."], heldout_questions=["What does the {thing} sell for?"],
        value="price", subject="thing"),
    "opens": dict(
        facts=["{place_name} opens at {A}.", "{place_name} opens its doors at {A} every day.",
               "Every morning {place_name} opens at {A}."],
        questions=["When does {place_name} open?", "What time does {place_name} open?",
                   "At what time does {place_name} open?"],
        heldout_facts=["The doors of {place_name} are unlocked at {A}."],
        heldout_questions=["How early does {place_name} open?"], value="time", subject="place_name"),
    "departs": dict(
        facts=["{vehicle} to {dest} leaves at {A} from {B}.", "{vehicle_cap} to {dest} departs at {A}.",
               "{vehicle_cap} to {dest} leaves {B} at {A}."],
        questions=["When does {vehicle} to {dest} leave?", "What time does {vehicle} to {dest} depart?",
                   "At what time does {vehicle} to {dest} leave?"],
        heldout_facts=["The timetable says {vehicle} to {dest} goes at {A}."],
        heldout_questions=["When is {vehicle} to {dest} scheduled to go?"], value="time", subject="vehicle",
        extra="stop"),
    "departs_from": dict(
        facts=["{vehicle_cap} to {dest} leaves at {C} from {A}.", "{vehicle_cap} to {dest} leaves {A} at {C}."],
        questions=["Where does {vehicle} to {dest} leave from?", "From where does {vehicle} to {dest} depart?"],
        heldout_facts=["Passengers board {vehicle} to {dest} at {A}."],
        heldout_questions=["Where do I catch {vehicle} to {dest}?"], value="stop", subject="vehicle", extra="time2"),
    "moved_because": dict(
        facts=["The {event} was moved because {A}.", "They moved the {event} because {A}.",
               "The {event} moved to a new room because {A}."],
        questions=["Why was the {event} moved?", "Why did they move the {event}?", "What was the reason the {event} moved?"],
        heldout_facts=["Because {A}, the {event} had to move."],
        heldout_questions=["For what reason was the {event} moved?"], value="reason", subject="event"),
    "born": dict(
        facts=["{S} was born on {A}.", "{S}'s birthday is {A}.", "{S} was born in {city} on {A}."],
        questions=["When was {S} born?", "What is {S}'s date of birth?", "On what date was {S} born?"],
        heldout_facts=["{S} came into the world on {A}."], heldout_questions=["What is the birth date of {S}?"],
        value="date"),
    "plays": dict(
        facts=["{S} plays {A}.", "{S} has played {A} since childhood.", "In the band, {S} plays {A}."],
        questions=["What instrument does {S} play?", "Which instrument does {S} play?", "What does {S} play in the band?"],
        heldout_facts=["{S} practises {A} every evening."], heldout_questions=["What is {S}'s instrument?"],
        value="instrument"),
    "sport": dict(
        facts=["{S} plays {A} on weekends.", "{S}'s favourite sport is {A}.", "{S} is in a {A} club."],
        questions=["What sport does {S} play?", "What is {S}'s favourite sport?", "Which sport does {S} like?"],
        heldout_facts=["{S} trains for {A} twice a week."], heldout_questions=["Which game does {S} practise?"],
        value="sport"),
    "teaches": dict(
        facts=["{S} teaches {A} at {school}.", "At {school}, {S} teaches {A}.", "{S} is a teacher of {A}."],
        questions=["What does {S} teach?", "Which subject does {S} teach?", "What subject is {S} a teacher of?"],
        heldout_facts=["{S} gives lessons in {A}."], heldout_questions=["In which subject does {S} give classes?"],
        value="subject"),
    "phone": dict(
        facts=["{S}'s phone number is {A}.", "You can call {S} on {A}.", "The number for {S} is {A}."],
        questions=["What is {S}'s phone number?", "What number can I call {S} on?", "What is the number for {S}?"],
        heldout_facts=["{S} can be reached at {A}."], heldout_questions=["How do I phone {S}?"], value="phone"),
    "code": dict(
        facts=["The code for {S}'s locker is {A}.", "{S}'s locker code is {A}.", "{S} set the locker code to {A}."],
        questions=["What is the code for {S}'s locker?", "What is {S}'s locker code?", "Which code opens {S}'s locker?"],
        heldout_facts=["To open {S}'s locker, enter {A}."], heldout_questions=["How do you unlock {S}'s locker?"],
        value="code"),
    "address": dict(
        facts=["{S} lives at {A}.", "{S}'s address is {A}.", "{S} moved into a flat at {A}."],
        questions=["What is {S}'s address?", "At what address does {S} live?", "Where exactly does {S} live?"],
        heldout_facts=["Letters for {S} go to {A}."], heldout_questions=["Where should I send a letter to {S}?"],
        value="address"),
    "married": dict(
        facts=["{S} is married to {A}.", "{S} married {A} in {year}.", "{S}'s husband is {A}.", "{S}'s wife is {A}."],
        questions=["Who is {S} married to?", "Who did {S} marry?", "Who is {S}'s partner?"],
        heldout_facts=["{S} and {A} got married in {year}."], heldout_questions=["Who is the spouse of {S}?"],
        value="person"),
    "pet": dict(
        facts=["{S} has {a_animal} called {A}.", "{S}'s {animal} is named {A}.", "{S} adopted {a_animal} named {A}."],
        questions=["What is the name of {S}'s {animal}?", "What is {S}'s {animal} called?", "What did {S} name the {animal}?"],
        heldout_facts=["{A} is the {animal} that lives with {S}."], heldout_questions=["What name does {S}'s {animal} have?"],
        value="pet_name"),
    "colour": dict(
        facts=["{S}'s favourite colour is {A}.", "{S} painted the front door {A}.", "{S} likes the colour {A} best."],
        questions=["What is {S}'s favourite colour?", "Which colour does {S} like best?", "What colour does {S} like most?"],
        heldout_facts=["Of all colours, {S} prefers {A}."], heldout_questions=["What colour would {S} pick?"],
        value="colour"),
    "duration": dict(
        facts=["The {event} lasts {A}.", "The {event} takes {A}.", "The {event} went on for {A}."],
        questions=["How long does the {event} last?", "How long is the {event}?", "How long did the {event} take?"],
        heldout_facts=["It took {A} to finish the {event}."], heldout_questions=["What is the length of the {event}?"],
        value="duration", subject="event"),
    "speaks": dict(
        facts=["{S} speaks {A}.", "{S} is fluent in {A}.", "At home, {S} speaks {A}."],
        questions=["What language does {S} speak?", "Which language is {S} fluent in?", "What does {S} speak at home?"],
        heldout_facts=["{S} grew up speaking {A}."], heldout_questions=["In what language does {S} talk?"],
        value="language"),
    "motto": dict(
        facts=["The motto of {company} is \"{A}\".", "{company} uses the slogan \"{A}\".",
               "The sign at {company} says \"{A}\"."],
        questions=["What is the motto of {company}?", "What is {company}'s slogan?", "What does the sign at {company} say?"],
        heldout_facts=["Written over the door of {company} are the words \"{A}\"."],
        heldout_questions=["What words does {company} live by?"], value="phrase", subject="company"),
    "count": dict(
        facts=["{S} has {A} {things}.", "{S} owns {A} {things}.", "There are {A} {things} in {S}'s collection."],
        questions=["How many {things} does {S} have?", "How many {things} does {S} own?",
                   "How many {things} are in {S}'s collection?"],
        heldout_facts=["{S} counted {A} {things} at home."], heldout_questions=["What is the number of {things} {S} has?"],
        value="count"),
    "friend": dict(
        facts=["{S}'s best friend is {A}.", "{S} is close friends with {A}.", "{S} often visits {pos} friend {A}."],
        questions=["Who is {S}'s best friend?", "Who is {S} friends with?", "Which friend does {S} visit?"],
        heldout_facts=["{A} and {S} have been friends since school."],
        heldout_questions=["Who does {S} spend time with most?"], value="person"),
    # only in the out-of-world generator: relations the model never trained on
    "studies": dict(facts=[], questions=[], heldout_facts=["{S} is studying {A} at university.",
                                                           "{S} is in the second year of a degree in {A}."],
                    heldout_questions=["What is {S} studying?", "What does {S} study?"], value="subject",
                    heldout="all"),
    "visited": dict(facts=[], questions=[], heldout_facts=["Last summer {S} visited {A}.",
                                                           "{S} spent a week in {A} in {month}."],
                    heldout_questions=["Which city did {S} visit?", "Where did {S} go last summer?"], value="city",
                    heldout="all"),
    "weighs": dict(facts=[], questions=[], heldout_facts=["{S}'s suitcase weighs {A} kilograms.",
                                                          "At the airport, {S}'s suitcase weighed {A} kilograms."],
                   heldout_questions=["How heavy is {S}'s suitcase?", "How much does {S}'s suitcase weigh?"],
                   value="decimal", heldout="all"),
    "fear": dict(facts=[], questions=[], heldout_facts=["{S} is afraid of {A}.", "{S} has always been scared of {A}."],
                 heldout_questions=["What is {S} afraid of?", "What scares {S}?"], value="fear", heldout="all"),
}
FEARS = """spiders|heights|the dark|thunderstorms|deep water|snakes|flying|crowds|dogs|clowns|needles|bees
|lifts|tunnels|bridges|horses|small spaces|loud noises|the sea|wasps|ghosts|moths|hospitals|birds"""
FEARS = [p.strip() for p in FEARS.replace("\n", "").split("|")]
EVENTS = ["meeting", "concert", "book club", "choir practice", "exam", "workshop", "lecture", "rehearsal",
          "yoga class", "board meeting", "wedding", "party", "tour", "interview", "film screening", "match",
          "chess tournament", "art class", "job fair", "press conference", "training session", "ceremony"]
VENUES = ["the bakery", "the library", "the pharmacy", "the museum", "the swimming pool", "the post office",
          "the market", "the bank", "the gym", "the café", "the bookshop", "the town hall", "the clinic",
          "the gallery", "the hardware store", "the ice rink", "the zoo", "the cinema"]
#: relations whose questions another of the group could also answer about the same subject: never both in one passage
CONFLICTS = [{"moved_to", "moved_from", "lives", "address", "visited"}, {"departs", "departs_from"},
             {"owns", "count"}, {"married", "friend"}, {"teaches", "studies"}]


def _conflict(a: str, b: str) -> bool:
    return a == b or any(a in g and b in g for g in CONFLICTS)


class Reading:
    """Generator of reading items. ``heldout=True``: the out-of-world generator (held-out locales, relations,
    phrasings and words); ``split``-free: the two generators never share a pool, so nothing needs hashing."""

    def __init__(self, seed: int = 0, heldout: bool = False):
        self.seed = seed
        self.heldout = heldout
        self.locales = HELDOUT_LOCALES if heldout else TRAIN_LOCALES
        if heldout:
            self.relations = {k: (v["heldout_facts"], v["heldout_questions"]) for k, v in RELATIONS.items()}
        else:
            self.relations = {k: (v["facts"], v["questions"]) for k, v in RELATIONS.items()
                              if v.get("heldout") != "all"}
        sw = lambda words: _split_words(words, heldout)  # noqa: E731
        self.things = sw(THINGS)
        self.places_in = sw(PLACES_IN)
        self.foods, self.instruments, self.sports = sw(FOODS), sw(INSTRUMENTS), sw(SPORTS)
        self.subjects, self.reasons, self.colours = sw(SUBJECTS), sw(REASONS), sw(COLOURS)
        self.animals, self.languages, self.vehicles = sw(ANIMALS), sw(LANGUAGES), sw(VEHICLES)
        self.fears, self.events, self.venues = sw(FEARS), sw(EVENTS), sw(VENUES)
        self.jobs = _jobs(heldout)
        self.vocab = _vocab(heldout)

    # -- entities ------------------------------------------------------------------------------------------
    def _pool(self, r: random.Random) -> dict:
        return _locale_pools(r.choice(self.locales))

    def person(self, r: random.Random) -> dict:
        p = self._pool(r)
        female = r.random() < 0.5
        firsts = p["female" if female else "male"] or p["female"] or p["male"]
        first, last = r.choice(firsts), r.choice(p["last"])
        style = r.random()
        name = first if style < 0.35 else f"{first} {last}" if style < 0.85 else \
            f"{r.choice(['Dr.', 'Mr.', 'Ms.', 'Mrs.', 'Professor'])} {last}"
        if name.startswith("Mr.") and female:
            name = name.replace("Mr.", "Ms.", 1)
        if name.startswith(("Ms.", "Mrs.")) and not female:
            name = name.replace("Mrs.", "Mr.", 1).replace("Ms.", "Mr.", 1)
        return {"name": name, "pro": "she" if female else "he", "pos": "her" if female else "his"}

    def city(self, r):
        return r.choice(self._pool(r)["city"] or _locale_pools("en_US")["city"])

    def value(self, kind: str, r: random.Random, ctx: dict) -> str:
        if kind == "place":
            return r.choice(self.places_in).replace("her grandmother", f"{ctx['pos']} grandmother")
        if kind == "a_thing":
            adj = r.choice(["", "", "an old ", "a new ", "a red ", "a small ", "a second-hand ", "a broken ",
                            "a blue ", "a heavy "])
            t = r.choice(self.things).replace("-", " ")
            return (adj + t) if adj else F_article(t) + " " + t
        if kind == "city":
            return self.city(r)
        if kind == "a_job":
            j = r.choice(self.jobs)
            return F_article(j) + " " + j
        if kind == "company":
            return r.choice(self._pool(r)["company"] or _locale_pools("en_US")["company"])
        if kind == "food":
            return r.choice(self.foods)
        if kind == "small_number":
            return str(r.randint(0, 120))
        if kind == "count":
            return r.choice([str(r.randint(2, 999)), r.choice(NUMBER_WORDS)])
        if kind == "price":
            v = r.randint(1, 5000) if r.random() < 0.6 else round(r.uniform(0.5, 999), 2)
            v = f"{v:.2f}" if isinstance(v, float) else str(v)
            return r.choice(["${v}", "{v} dollars", "€{v}", "{v} euros", "£{v}", "{v} pounds", "{v} francs"]).format(v=v)
        if kind in ("time", "time2"):
            h, m = r.randint(0, 23), r.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, r.randint(0, 59)])
            if r.random() < 0.5:
                return f"{h}:{m:02d}"
            hh = h % 12 or 12
            return f"{hh}:{m:02d} {'am' if h < 12 else 'pm'}" if m or r.random() < 0.5 else f"{hh} {'am' if h < 12 else 'pm'}"
        if kind == "stop":
            return r.choice([f"pier {r.choice(NUMBER_WORDS)}", f"platform {r.randint(1, 24)}",
                             f"gate {r.choice('ABCDEFGH')}{r.randint(1, 40)}", f"stop {r.randint(1, 99)}",
                             f"{r.choice(self._pool(r)['street'] or ['Main Street'])}",
                             f"the {r.choice(['north', 'south', 'east', 'west', 'old', 'new'])} harbour"])
        if kind == "reason":
            return r.choice(self.reasons)
        if kind == "date":
            d, mo, y = r.randint(1, 28), r.choice(MONTHS), r.randint(1931, 2024)
            return r.choice([f"{d} {mo} {y}", f"{mo} {d}, {y}", f"{d} {mo}"])
        if kind == "instrument":
            return r.choice(self.instruments)
        if kind == "sport":
            return r.choice(self.sports).replace("-", " ")
        if kind == "subject":
            return r.choice(self.subjects).replace("-", " ")
        if kind == "phone":
            return r.choice([f"{r.randint(200, 999)}-{r.randint(1000, 9999)}",
                             f"0{r.randint(10, 99)} {r.randint(100, 999)} {r.randint(1000, 9999)}",
                             f"+{r.randint(1, 99)} {r.randint(100, 999)} {r.randint(100000, 9999999)}"])
        if kind == "code":
            alpha = "ABCDEFGHJKLMNPQRSTUVWXYZ"
            return r.choice([str(r.randint(0, 10 ** r.randint(3, 7) - 1)).zfill(4),
                             f"{r.choice(alpha)}{r.choice(alpha)}-{r.randint(100, 9999)}",
                             f"{r.randint(1, 99)}{r.choice(alpha)}{r.randint(1, 9)}"])
        if kind == "address":
            p = self._pool(r)
            return f"{r.randint(1, 250)} {r.choice(p['street'] or _locale_pools('en_US')['street'])}"
        if kind == "person":
            return self.person(r)["name"]
        if kind == "pet_name":
            p = self._pool(r)
            return r.choice(p["female"] + p["male"] or ["Rex"]) if r.random() < 0.6 else r.choice(self.vocab).capitalize()
        if kind == "colour":
            return r.choice(self.colours)
        if kind == "duration":
            unit = r.choice(UNITS)
            n = r.choice([str(r.randint(2, 90)), r.choice(NUMBER_WORDS)])
            return f"{n} {unit}" if r.random() < 0.8 else f"{n} and a half {unit}"
        if kind == "language":
            return r.choice(self.languages)
        if kind == "phrase":
            return " ".join(r.sample(self.vocab[:8000], r.randint(2, 6))).capitalize()
        if kind == "decimal":
            return f"{r.uniform(1, 40):.1f}"
        if kind == "fear":
            return r.choice(self.fears)
        raise ValueError(kind)

    def _slots(self, r: random.Random, subj: dict, rel: str) -> dict:
        spec = RELATIONS[rel]
        thing = r.choice(self.things).replace("-", " ")
        veh = r.choice(self.vehicles)
        animal = r.choice(self.animals).replace("-", " ")
        s = {"S": subj["name"], "pos": subj["pos"], "pro": subj["pro"], "thing": thing,
             "a_thing": F_article(thing) + " " + thing, "things": _plural(thing), "year": str(r.randint(1950, 2024)),
             "city": self.city(r), "month": r.choice(MONTHS), "school": self.value("company", r, subj),
             "company": self.value("company", r, subj), "vehicle": veh.lower() if veh.lower().startswith("the") else veh,
             "vehicle_cap": veh[0].upper() + veh[1:], "dest": self.city(r), "animal": animal,
             "a_animal": F_article(animal) + " " + animal, "event": r.choice(self.events),
             "place_name": r.choice(self.venues) + r.choice(["", "", f" on {self.value('address', r, subj).split(' ', 1)[1]}",
                                                            f" in {self.city(r)}"])}
        s["A"] = self.value(spec["value"], r, subj)
        extra = spec.get("extra")
        if extra == "from_city" or extra == "to_city":
            s["B"] = self.city(r)
        elif extra == "stop":
            s["B"] = self.value("stop", r, subj)
        elif extra == "time2":
            s["C"] = self.value("time", r, subj)
        s.setdefault("B", self.city(r))
        s.setdefault("C", self.value("time", r, subj))
        return s

    def _fact(self, r, rel: str, slots: dict, template: str | None = None) -> str:
        facts = self.relations[rel][0]
        t = template or r.choice(facts)
        if ("husband" in t and slots["pro"] == "he") or ("wife" in t and slots["pro"] == "she"):
            t = t.replace("husband", "wife") if slots["pro"] == "he" else t.replace("wife", "husband")
        out = t.format(**slots).replace("..", ".")
        return out[0].upper() + out[1:]

    def _subject(self, rel: str, slots: dict) -> str:
        kind = RELATIONS[rel].get("subject")
        return slots[kind] if kind else slots["S"]

    # -- context QA ----------------------------------------------------------------------------------------
    def _cqa(self, r: random.Random) -> dict:
        rels = [k for k, v in self.relations.items() if v[0] and v[1]]
        rel = r.choice(rels)
        subj = self.person(r)
        slots = self._slots(r, subj, rel)
        # pronoun: "Amara keeps her violin ... Her friend Duc ..."
        facts = [self._fact(r, rel, slots)]
        target_subject = self._subject(rel, slots)
        n_more = r.choice([0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7])
        for _ in range(n_more):
            k = r.random()
            if k < 0.35:  # the same relation about someone/something else: the distractor that needs reading
                other = self.person(r)
                os = self._slots(r, other, rel)
                if self._subject(rel, os) == target_subject or os["A"] == slots["A"]:
                    continue
                facts.append(self._fact(r, rel, os))
            elif k < 0.65:  # another fact about the same person
                rel2 = r.choice(rels)
                if _conflict(rel, rel2) or RELATIONS[rel2].get("subject"):
                    continue
                s2 = self._slots(r, subj, rel2)
                if s2["A"] == slots["A"]:
                    continue
                f = self._fact(r, rel2, s2)
                if r.random() < 0.5 and f.startswith(subj["name"] + " "):
                    f = subj["pro"].capitalize() + f[len(subj["name"]):]
                facts.append(f)
            elif k < 0.9:  # an unrelated fact about someone else
                other = self.person(r)
                rel2 = r.choice(rels)
                if rel2 == rel:
                    continue
                facts.append(self._fact(r, rel2, self._slots(r, other, rel2)))
            else:
                facts.append(r.choice(FILLERS))
        facts = list(dict.fromkeys(facts))
        first = facts[0]
        rest = facts[1:]
        r.shuffle(rest)
        pos = r.randint(0, len(rest))
        facts = rest[:pos] + [first] + rest[pos:]
        question = r.choice(self.relations[rel][1]).format(**slots)
        question = question[0].upper() + question[1:]
        answer = slots["A"]
        return {"context": " ".join(facts), "question": question, "answer": answer, "relation": rel,
                "sentences": len(facts), "fact": first}

    def _take(self, n: int, stream: str, make) -> list[dict]:
        r = random.Random(f"{self.seed}:{stream}:{self.heldout}")
        return [make(r) for _ in range(n)]

    def context_qa(self, n: int, stream: str = "cqa") -> list[dict]:
        return self._take(n, stream, self._cqa)

    # -- tools ---------------------------------------------------------------------------------------------
    CALC_Q = ["What is {a} times {b}?", "What is {a} * {b}?", "Compute {a} * {b}.", "Multiply {a} by {b}.",
              "What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}.", "What is {a} minus {b}?",
              "What is {a} - {b}?", "Subtract {b} from {a}.", "What is {a} divided by {b}?", "What is {a} / {b}?",
              "Calculate {a} * {b}.", "How much is {a} times {b}?", "What do you get if you multiply {a} by {b}?",
              "Please work out {a} + {b}.", "What's {a} x {b}?", "Can you compute {a} minus {b}?"]
    CALC_Q_HELDOUT = ["I need the product of {a} and {b}.", "Find {a} multiplied by {b}.",
                      "What is the sum of {a} and {b}?", "Take {b} away from {a}.", "How much is {a} over {b}?",
                      "Work out {a} times {b} for me."]
    _OP_OF = {"times": "*", "*": "*", "Multiply": "*", "multiply": "*", "x": "*", "plus": "+", "+": "+",
              "Add": "+", "minus": "-", "-": "-", "Subtract": "-", "divided": "/", "/": "/", "product": "*",
              "multiplied": "*", "sum": "+", "away": "-", "over": "/"}

    def number(self, r: random.Random) -> str:
        digits = r.choice([1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7])
        v = r.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)
        s = str(v)
        k = r.random()
        if k < 0.12:
            s = f"{s}.{r.randint(1, 99)}"
        elif k < 0.2:
            s = "-" + s
        return s

    def _calc(self, r: random.Random) -> dict:
        a, b = self.number(r), self.number(r)
        q = r.choice(self.CALC_Q_HELDOUT if self.heldout else self.CALC_Q)
        op = next(v for k, v in self._OP_OF.items() if k in q.replace("{a}", "").replace("{b}", "").split()
                  or f" {k} " in q)
        if op == "/" and float(b) == 0:
            b = "7"
        bx = f"({b})" if b.startswith("-") else b
        expr = f"{a}{op}{bx}"
        return {"question": q.format(a=a, b=b), "a": a, "b": b, "expression": expr, "answer": F.calculator(expr)}

    def calculator(self, n: int, stream: str = "calc") -> list[dict]:
        return self._take(n, stream, self._calc)

    def chat_calc(self, it: dict, r: random.Random) -> list[dict]:
        msgs = [{"role": "system", "content": F.TOOLS_SYSTEM}] if r.random() < 0.5 else []
        return msgs + [{"role": "user", "content": it["question"]},
                       {"role": "assistant", "content": F.format_call("calculator", expression=it["expression"])},
                       {"role": "tool", "content": it["answer"]},
                       {"role": "assistant", "content": r.choice(["The answer is {x}.", "It is {x}.", "{x}."]
                                                                 if not self.heldout else ["The answer is {x}."]).format(x=it["answer"])}]

    LOOKUP_Q = ["Who is {n}?", "Tell me about {n}.", "What do you know about {n}?", "Where does {n} live?",
                "What is the job of {n}?", "Look up {n}.", "When was {n} born?"]

    def _unknown(self, r: random.Random) -> dict:
        name = self.person(r)["name"]
        if " " not in name:
            name = name + " " + r.choice(self._pool(r)["last"])
        return {"question": r.choice(self.LOOKUP_Q).format(n=name), "entity": name}

    def unknown_lookup(self, n: int, stream: str = "unknown") -> list[dict]:
        return self._take(n, stream, self._unknown)

    def chat_unknown(self, it: dict, r: random.Random, world=None) -> list[dict]:
        msgs = [{"role": "system", "content": F.TOOLS_SYSTEM}] if r.random() < 0.5 else []
        from .corpus import lookup

        obs = lookup(it["entity"], world)
        return msgs + [{"role": "user", "content": it["question"]},
                       {"role": "assistant", "content": F.format_call("lookup", entity=it["entity"])},
                       {"role": "tool", "content": obs},
                       {"role": "assistant", "content": UNKNOWN_REPLY.format(n=it["entity"])}]

    # -- multi-turn ----------------------------------------------------------------------------------------
    def _followup(self, r: random.Random) -> dict:
        """Turn 1: context + question; turn 2: a question about another fact of the same context."""
        while True:
            a = self._cqa(r)
            b_rel = r.choice([k for k, v in self.relations.items() if v[0] and v[1] and not _conflict(k, a["relation"])])
            subj = self.person(r)
            slots = self._slots(r, subj, b_rel)
            fact = self._fact(r, b_rel, slots)
            if slots["A"] in a["context"]:
                continue
            sents = a["context"].split(". ")
            k = r.randint(0, len(sents))
            context = ". ".join(sents[:k] + [fact.rstrip(".")] + sents[k:]) if sents[-1].endswith(".") else a["context"] + " " + fact
            if not context.endswith((".", '"', "?")):
                context += "."
            q2 = r.choice(self.relations[b_rel][1]).format(**slots)
            return {"context": context, "question": a["question"], "answer": a["answer"],
                    "question2": q2[0].upper() + q2[1:], "answer2": slots["A"]}

    def followup(self, n: int, stream: str = "followup") -> list[dict]:
        return self._take(n, stream, self._followup)

    @staticmethod
    def chat_followup(it: dict) -> list[dict]:
        return F.context_qa_messages(it["context"], it["question"]) + [
            {"role": "assistant", "content": it["answer"]},
            {"role": "user", "content": f"Question: {it['question2']}"},
            {"role": "assistant", "content": it["answer2"]}]

    # -- mixes ---------------------------------------------------------------------------------------------
    CHAT_MIX = {"cqa": 0.62, "calc": 0.15, "unknown": 0.06, "followup": 0.10, "copy": 0.07}

    def _copy(self, r: random.Random) -> list[dict]:
        """Repeat a string made of arbitrary Latin letters and digits: copying that does not depend on knowing
        the tokens (every letter of ``LETTER_INVENTORY`` appears in some passage)."""
        words = []
        for _ in range(r.randint(1, 5)):
            if r.random() < 0.5:
                w = "".join(r.choice(LETTER_INVENTORY + "aeiou" * 8 + "nrstlmkdp" * 4) for _ in range(r.randint(2, 9)))
                words.append(w.capitalize() if r.random() < 0.5 else w)
            else:
                words.append(r.choice(self.vocab) if r.random() < 0.6 else self.number(r))
        phrase = " ".join(words)
        q = r.choice(["Repeat after me: {p}", "Say this back: {p}", "Copy this exactly: {p}", "Echo: {p}"])
        if r.random() < 0.5:  # the same skill inside context QA
            name = phrase if len(phrase) < 40 else phrase[:40].rsplit(" ", 1)[0]
            subj = self.person(r)
            ctx = f"{subj['name']} wrote the word {name} on the board. {self._fact(r, 'colour', self._slots(r, subj, 'colour'))}"
            return self.chat_cqa({"context": ctx, "question": f"What word did {subj['name']} write on the board?",
                                  "answer": name})
        return [{"role": "user", "content": q.format(p=phrase)}, {"role": "assistant", "content": phrase}]

    @staticmethod
    def chat_cqa(it: dict) -> list[dict]:
        return F.context_qa_messages(it["context"], it["question"]) + [{"role": "assistant", "content": it["answer"]}]

    def chat_examples(self, n: int, mix: dict | None = None, stream: str = "chat", world=None) -> list[list[dict]]:
        mix = mix or self.CHAT_MIX
        r = random.Random(f"{self.seed}:{stream}:mix:{self.heldout}")
        out = []
        for kind in r.choices(list(mix), weights=list(mix.values()), k=n):
            if kind == "cqa":
                out.append(self.chat_cqa(self._cqa(r)))
            elif kind == "calc":
                out.append(self.chat_calc(self._calc(r), r))
            elif kind == "unknown":
                out.append(self.chat_unknown(self._unknown(r), r, world))
            elif kind == "followup":
                out.append(self.chat_followup(self._followup(r)))
            else:
                out.append(self._copy(r))
        return out

    def documents(self, stream: str = "docs"):
        """Endless plain-text documents for pre-training: passages, and passages with a question and answer."""
        r = random.Random(f"{self.seed}:{stream}:{self.heldout}")
        while True:
            it = self._cqa(r)
            if r.random() < 0.5:
                yield F.EOT + it["context"] + "\n"
            else:
                yield F.EOT + f"Context: {it['context']}\nQuestion: {it['question']}\nAnswer: {it['answer']}\n"


UNKNOWN_REPLY = "I could not find anything about {n}."


def F_article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


# ------------------------------------------------------------------------------------------------ scoring
def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    import re
    import string

    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers) -> bool:
    answers = [answers] if isinstance(answers, str) else answers
    return any(normalize(prediction) == normalize(a) for a in answers)
