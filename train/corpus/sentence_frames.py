"""Sentence types: statements, compound sentences, questions, orders, descriptions, weather,
and sentences built around numbers (births, timetables, prices, distances, ordinals, crowds).

Each builder is a plain function of a Grammar (grammar.py) that returns the sentence as
tokens, final punctuation included; sentence() picks one by weight. Every random choice
goes through the grammar, so a seed still fixes the output.
"""

from __future__ import annotations

from .grammar import (
    DURATIVE,
    FAMILY,
    HANDHELD,
    INDEFINITE,
    NP,
    PEOPLE,
    STATIVE,
    TENSES,
    WHEN,
    Clause,
    Grammar,
)
from .spoken import number_to_words, ordinal_words, year_words


def sentence(g: Grammar) -> list[str]:
    """One sentence of a type picked by weight (statements and compounds most often)."""
    builders = {statement: 25, compound: 30, question: 16, imperative: 7, existential: 6,
                description: 11, numbers: 7, passive: 3}
    return g.weighted(builders)(g)


def statement(g: Grammar) -> list[str]:
    tense = g.weighted(TENSES)
    if g.chance(0.1):  # fronted time phrase: "Last winter, the river froze."
        front = g.time_phrase(WHEN[tense])
        return front + [","] + g.say(g.clause(tense=tense, time=False)) + ["."]
    words = g.say(g.clause(tense=tense))
    if g.chance(0.08):
        words = g.phrase(g.lists.adverbs, "opener") + [","] + words
    return words + ["."]


def compound(g: Grammar) -> list[str]:
    """Two clauses joined by and / but / because / when / while / if ..., with tenses that
    fit together (if she comes, we will stay; when he came home, she was sleeping)."""
    kind = g.weighted({"co": 45, "sub": 45, "cond": 10})
    conj = g.phrase(g.lists.conjunctions, kind)
    family = g.weighted({"past": 55, "present": 25, "future": 20}
                        if kind != "cond" else {"present": 30, "future": 70})
    second = g.pick(FAMILY[family])
    if kind != "co" and family == "future":
        second = g.pick(("present", "present", "perfect"))
    if conj == ["while"]:
        second = "progressive" if family != "past" else "past_progressive"
    first = g.clause(tense=g.pick(FAMILY[family]), time=g.chance(0.6))
    fronted = kind != "co" and g.chance(0.35)
    subj = None
    if not fronted and g.chance(0.45) and first.subj.kind in (*PEOPLE, "animal"):
        subj = g.pronoun_np(g.pronoun_of(first.subj))._replace(kind=first.subj.kind)
    later = g.clause(tense=second, subj=subj, time=False)
    if kind == "co" and subj and not later.aux and not later.negative and g.chance(0.5):
        words = later.adverb + later.main + later.rest  # "... and sold his horse"
    else:
        words = g.say(later)
    if fronted:
        return conj + words + [","] + g.say(first) + ["."]
    comma = [","] if conj[0] in ("but", "so", "yet") else []
    return g.say(first) + comma + conj + words + ["."]


def question(g: Grammar) -> list[str]:
    style = g.weighted({"yesno": 26, "object": 18, "adverb": 22, "count": 9, "who": 7,
                        "ever": 5, "be": 8, "how": 5})
    you = g.pronoun_np(g.you) if g.chance(0.3) else None
    if style == "yesno":
        return g.ask(g.clause(question=True, subj=you)) + ["?"]
    if style in ("object", "count"):
        verb = g.pick(g.object_verbs)
        kind = g.pick(g.noun_objects(verb))
        noun = g.pick(g.lists.nouns[kind])
        if style == "count":
            wh = ["how", "much", noun.sg] if noun.pl is None else ["how", "many", noun.pl]
        elif kind in PEOPLE:
            wh = ["who"]
        elif noun.pl is not None and g.chance(0.35):
            wh = ["which", noun.sg]
        else:
            wh = ["what"]
        c = g.clause(question=True, verb=verb, drop_object=True, subj=you)
        return g.ask(c, wh) + ["?"]
    if style == "adverb":
        wh = g.pick(("where", "when", "why", "how", "why"))
        c = g.clause(question=True, place=wh != "where", time=wh != "when", subj=you)
        return g.ask(c, [wh]) + ["?"]
    if style == "how":  # "How often do you visit her?" "How long have they lived here?"
        wh, tense = g.pick(((["how", "often"], "present"), (["how", "long"], "perfect")))
        verb = g.verb[g.pick(DURATIVE)] if tense == "perfect" else None
        return g.ask(g.clause(question=True, tense=tense, verb=verb, time=False), wh) + ["?"]
    if style == "who":
        who = NP(["who"], "person", 3, False, g.pick("mf"), True)
        return g.say(g.clause(subj=who, verb=g.pick(g.object_verbs), negative=False)) + ["?"]
    if style == "ever":
        c = g.clause(tense="perfect", question=True, negative=False, time=False, subj=you)
        return g.ask(c._replace(adverb=["ever"])) + ["?"]
    return g.ask(be_clause(g, question=True)) + ["?"]


def imperative(g: Grammar) -> list[str]:
    verb = g.pick(g.object_verbs if g.chance(0.7) else g.simple_for["person"])
    while verb.base in STATIVE:  # "want a kite" is no order
        verb = g.pick(g.object_verbs)
    style = g.weighted({"plain": 50, "dont": 20, "lets": 15, "name": 15})
    hearer = g.we if style == "lets" else g.you
    rest = g.complement(verb, g.pronoun_np(hearer), 0)
    rest += g.modifiers(verb, g.pronoun_np(hearer), "future", True, True, 0, not rest)
    words = [verb.base] + rest
    if style == "dont":
        words = ["don't"] + words
    elif style == "lets":
        words = ["let's"] + words
    elif style == "name":
        words = [g.name().words[-1], ","] + words
    if style != "lets" and g.chance(0.25):
        words = ["please"] + words if g.chance(0.5) else words + [",", "please"]
    return words + ["."]


def existential(g: Grammar) -> list[str]:
    """there is / there were / there will be + an indefinite noun phrase + a place."""
    kind = g.pick(("animal", "thing", "person", "food", "plant", "vehicle", "clothing",
                   "text", "drink", "material", "furniture", "nature", "event"))
    noun = g.pick(g.lists.nouns[kind])
    count = "mass" if noun.pl is None else "pl" if g.chance(0.5) else "sg"
    tense, negative = g.pick(("present", "past", "past", "future")), g.chance(0.2)
    be = {"present": ["is" if count != "pl" else "are"],
          "past": ["was" if count != "pl" else "were"], "future": ["will", "be"]}[tense]
    if negative:
        det = ["a"] if count == "sg" else ["any"]
    elif count == "pl" and g.chance(0.45):
        det = number_to_words(g.count()).split()
    else:
        phrases, weights = g.lists.determiners[count]
        det = list(g.rng.choices(phrases, weights)[0])
        if " ".join(det) not in INDEFINITE:
            det = ["a"] if count == "sg" else ["some"]
        det = [] if det == ["-"] else det
    adj = g.adjective(kind) if kind in g.lists.adjectives and g.chance(0.3) else []
    lead = g.say(Clause(NP(["there"], kind, pronoun=True), be[:1], [], be[1:], [], negative))
    words = lead + det + adj + [noun.pl if count == "pl" else noun.sg]
    if g.chance(0.85):
        words += g.location() if g.chance(0.7) or kind not in HANDHELD else g.spot()
    if g.chance(0.25):
        words += g.time_phrase({"present": "now"}.get(tense, tense))
    return words + ["."]


def be_clause(g: Grammar, question: bool = False) -> Clause:
    """subject + be + adjective: "the soup was too hot", "is your sister a nurse"."""
    kind = "person" if g.chance(0.4) else g.pick(
        ("animal", "food", "drink", "thing", "clothing", "place", "vehicle", "text", "plant",
         "event", "idea", "nature", "furniture", "sound", "game"))
    subj = g.person() if kind == "person" else g.noun_phrase(kind)
    tense = g.pick(("present", "present", "past", "past", "future", "perfect", "modal"))
    if kind == "person" and g.chance(0.25):
        nouns = [n for n in g.lists.nouns["person"] if n.extra[0] in ("x", subj.gender)]
        noun = g.pick(nouns)
        rest = ["a", noun.sg] if not subj.plural else [noun.pl]
    else:
        rest = g.adjective(kind, attributive=False)
    aux, main = g.copula(subj, tense)
    negative = not question and g.chance(0.15)
    if not question and g.chance(0.2):
        rest += g.location()
    if not question and g.chance(0.4):
        rest += g.time_phrase("now" if tense == "present" else WHEN[tense])
    return Clause(subj, aux, [], main, rest, negative)


def description(g: Grammar) -> list[str]:
    style = g.weighted({"be": 40, "compare": 15, "superlative": 15, "age": 8, "weather": 22})
    if style == "be":
        return g.say(be_clause(g)) + ["."]
    if style == "weather":
        return weather(g)
    if style == "age":
        subj = g.person()
        aux, main = g.copula(subj, g.pick(("present", "past", "future")))
        years = g.rng.randint(2, 99)
        rest = [*number_to_words(years).split(), "years", "old"]
        return g.say(Clause(subj, aux, [], main, rest, False)) + ["."]
    kind = "person" if g.chance(0.4) else g.pick(
        ("animal", "place", "thing", "food", "vehicle", "clothing", "text", "plant", "idea",
         "event", "sound", "nature", "task"))
    adj = g.pick([a for a in g.lists.adjectives[kind] if a.comparative])
    if style == "compare":
        first = g.person() if kind == "person" else g.noun_phrase(kind)
        other = g.person(pronoun=False) if kind == "person" else g.noun_phrase(kind)
        aux, main = g.copula(first, g.pick(("present", "past")))
        if g.chance(0.25):
            rest = ["as", adj.word, "as", *other.words]
        else:
            more = ["more", adj.word] if adj.comparative == "more" else [adj.comparative]
            rest = [*more, "than", *other.words]
        return g.say(Clause(first, aux, [], main, rest, g.chance(0.1))) + ["."]
    best = ["most", adj.word] if adj.superlative == "most" else [adj.superlative]
    if kind == "person":  # "Mary is the tallest girl in the village."
        subj = g.person()
        nouns = [n for n in g.lists.nouns["person"] if n.extra[0] in ("x", subj.gender)]
        noun = g.pick(nouns)
        head = ["the", *best, noun.pl if subj.plural else noun.sg, "in"]
        where = g.place_name() if g.chance(0.4) else g.place()
        aux, main = g.copula(subj, g.pick(("present", "past")))
        return g.say(Clause(subj, aux, [], main, head + where, False)) + ["."]
    # "It was the longest letter she had ever written."
    verb = g.pick([v for v in g.taking[kind] if "person" in v.subjects])
    row = g.pick([p for p in g.lists.pronouns if p.gender != "n"])
    past = g.chance(0.5)
    frame = g.pick((["it"], ["that"], ["this"] if not past else ["it"]))
    frame = g.say(Clause(NP(frame, kind, pronoun=True), ["was" if past else "is"], [],
                         [], [], False))
    have = "had" if past else "has" if (row.person, row.plural) == (3, False) else "have"
    noun = g.pick(g.lists.nouns[kind])
    return frame + ["the", *best, noun.sg, row.subj, have, "ever", verb.pp, "."]


def weather(g: Grammar) -> list[str]:
    it = NP(["it"], "nature", pronoun=True)
    tense = g.pick(("present", "past", "past", "future"))
    when = {"present": "now"}.get(tense, tense)
    aux, main = g.copula(it, tense)
    adj = g.pick([a for a in g.lists.adjectives["weather"] if a.comparative])
    r = g.rng.random()
    if r < 0.35:  # "It was extremely cold last night."
        rest = g.adjective("weather", attributive=False)
        rest += g.time_phrase(when) if g.chance(0.6) else []
    elif r < 0.5:  # "It rained all night."
        tense = g.pick(("present", "past", "past_progressive", "future", "progressive"))
        aux, main = g.verb_group(g.verb["rain"], tense, it, False)
        rest = g.time_phrase(WHEN[tense]) if g.chance(0.7) else []
    elif r < 0.62:  # "It was a foggy morning."
        rest = ["a", *g.adjective("weather"), *g.phrase(g.lists.times, "daypart")]
    elif r < 0.77:  # "It will be colder tomorrow."
        more = ["more", adj.word] if adj.comparative == "more" else [adj.comparative]
        rest = more + g.time_phrase(when)
    elif r < 0.88:  # "It was the coldest winter in forty years."
        best = ["most", adj.word] if adj.superlative == "most" else [adj.superlative]
        span = g.pick(([g.pick(("day", "week", "month")), "of", "the", "year"],
                       [*g.phrase(g.lists.times, "season"), "in",
                        *number_to_words(g.rng.randint(2, 99)).split(), "years"]))
        rest = ["the", *best, *span]
    else:  # "It was twelve degrees below zero."
        rest = [*number_to_words(g.rng.randint(2, 40)).split(), "degrees"]
        rest += ["below", "zero"] if g.chance(0.4) else []
    return g.say(Clause(it, aux, [], main, rest, False)) + ["."]


def numbers(g: Grammar) -> list[str]:
    """Sentences built around spelled-out numbers: years, dates, clock times, prices,
    distances, ordinals and crowds."""
    return g.weighted({born: 16, timetable: 16, price: 16, distance: 14, ordinal: 18,
                       crowd: 12, routine: 8})(g)


def born(g: Grammar) -> list[str]:  # "Greta was born on the eighteenth of July."
    subj = g.person()
    year = year_words(g.rng.randint(1800, 2023)).split()
    where = g.pick((["in", *year], g.date(), ["in", *g.place_name()],
                    ["in", *g.place_name(), "in", *year]))
    return g.say(Clause(subj, [g.be(subj)[1]], [], ["born"], where, False)) + ["."]


def timetable(g: Grammar) -> list[str]:  # "What time does the last train to Leeds leave?"
    noun = g.pick(g.lists.nouns["vehicle"])
    det = ["the", *g.pick((["first"], ["last"], ["next"], [], []))]
    route = [g.pick(("to", "from")), *g.place_name()] if g.chance(0.4) else []
    vehicle = NP(det + [noun.sg] + route, "vehicle")
    verb = g.verb[g.pick(("leave", "arrive"))]
    tense = g.pick(("present", "past", "future"))
    if g.chance(0.25):
        aux, main = g.verb_group(verb, tense, vehicle, True)
        return g.ask(Clause(vehicle, aux, [], main, [], False), ["what", "time"]) + ["?"]
    aux, main = g.verb_group(verb, tense, vehicle, False)
    at = ["at", *g.clock()]
    return g.say(Clause(vehicle, aux, [], main, at, False)) + ["."]


def price(g: Grammar) -> list[str]:  # "Your uncle paid twelve dollars for the old clock."
    unit = g.pick([n for n in g.lists.nouns["unit"] if "money" in n.extra])
    thing = g.noun_phrase(g.pick((*HANDHELD, "animal", "vehicle")))
    tense = g.pick(("past", "past", "present", "future"))
    if g.chance(0.5):
        buyer = g.person()
        aux, main = g.verb_group(g.verb["pay"], tense, buyer, False)
        rest = g.amount(unit) + ["for"] + thing.words
        return g.say(Clause(buyer, aux, [], main, rest, False)) + ["."]
    aux, main = {"past": ([], ["cost"]), "future": (["will"], ["cost"])}.get(
        tense, ([], ["cost" if thing.plural else "costs"]))
    return g.say(Clause(thing, aux, [], main, g.amount(unit), False)) + ["."]


def crowd(g: Grammar) -> list[str]:  # "Two hundred people came to the wedding."
    if g.chance(0.3):
        size = number_to_words(g.rng.randint(2, 999) * 1000).split()
        if g.chance(0.2):
            size = [*number_to_words(g.rng.randint(2, 9)).split(), "million"]
        approx = g.pick((["about"], ["nearly"], ["almost"], ["over"], []))
        return [*g.pick(g.lists.places["city"]), "has", *approx, *size, "people", "."]
    kind = g.pick(("person", "animal"))
    group = g.noun_phrase(kind, plural=True, det=number_to_words(g.count()).split())
    return g.say(g.clause(subj=group, tense="past")) + ["."]


def routine(g: Grammar) -> list[str]:  # "He wakes up at a quarter past nine."
    subj = g.person()
    verb, particle = g.pick(((g.verb["wake"], ["up"]), (g.verb["get"], ["up"]),
                             (g.verb["leave"], []), (g.verb["arrive"], [])))
    aux, main = g.verb_group(verb, g.pick(("past", "present", "future")), subj, False)
    at = ["at", *g.clock()]
    return g.say(Clause(subj, aux, [], main + particle, at, False)) + ["."]


def distance(g: Grammar) -> list[str]:
    units = g.lists.nouns["unit"]
    if g.chance(0.4):  # "The village is twelve miles from London."
        where = NP(g.place(), "place") if g.chance(0.6) else NP(g.place_name(), "place")
        unit = g.units[g.pick(("mile", "kilometer"))]
        far = [*number_to_words(g.rng.randint(2, 60)).split(), unit.pl]
        rest = far + (["away"] if g.chance(0.3) else ["from", *g.place_name()])
        aux, main = g.copula(where, g.pick(("present", "past")))
        return g.say(Clause(where, aux, [], main, rest, False)) + ["."]
    if g.chance(0.5):  # "We walked nine miles yesterday."
        subj = g.person()
        verb = g.verb[g.pick(("walk", "run", "drive", "swim", "ride", "travel"))]
        far = g.amount(g.pick([u for u in units if "distance" in u.extra]))
        aux, main = g.verb_group(verb, "past", subj, False)
        rest = far + (g.time_phrase("past") if g.chance(0.4) else [])
        return g.say(Clause(subj, aux, [], main, rest, False)) + ["."]
    tense = g.pick(("past", "present"))
    if g.chance(0.6):  # "The pumpkin weighed twenty pounds."
        thing = g.noun_phrase(g.pick(("animal", "food", "thing", "furniture")))
        heavy = g.amount(g.pick([u for u in units if "weight" in u.extra]))
        aux, main = g.verb_group(g.verb["weigh"], tense, thing, False)
        return g.say(Clause(thing, aux, [], main, heavy, False)) + ["."]
    # "The old barrel held three gallons of cider."
    container = g.pick([m for m in g.lists.nouns["measure"] if "drink" in m.extra])
    container = NP(["the", container.sg], "measure")
    volume = g.amount(g.pick([u for u in units if "volume" in u.extra]))
    drink = g.pick(g.lists.nouns["drink"]).sg
    aux, main = g.verb_group(g.verb["hold"], tense, container, False)
    return g.say(Clause(container, aux, [], main, [*volume, "of", drink], False)) + ["."]


def ordinal(g: Grammar) -> list[str]:
    r = g.rng.random()
    nth = ordinal_words(g.rng.randint(1, 12)).split()
    if r < 0.25:  # "It was the third time that the miller had sold a horse."
        lead = ["it", "was", "the", *nth, "time"] + (["that"] if g.chance(0.5) else [])
        return lead + g.say(g.clause(tense="past_perfect", time=False)) + ["."]
    if r < 0.45:
        subj = g.person()
        aux, main = g.verb_group(g.verb["live"], g.pick(("present", "past")), subj, False)
        return g.say(Clause(subj, aux, [], main, ["on", "the", *nth, "floor"], False)) + ["."]
    if r < 0.6:
        century = ordinal_words(g.rng.randint(11, 21)).split()
        return [*g.place(), "was", "built", "in", "the", *century, "century", "."]
    if r < 0.8:
        age = ordinal_words(g.rng.randint(1, 100)).split()
        day = g.pick((["today", "is"], ["tomorrow", "is"], ["yesterday", "was"]))
        return day + g.owner() + age + ["birthday", "."]
    subj = g.person()
    verb = g.verb[g.pick(("come", "finish"))]
    aux, main = g.verb_group(verb, g.pick(("past", "perfect")), subj, False)
    nth = ordinal_words(g.rng.randint(1, 10)).split()
    rest = [*nth, "in", "the", g.pick(("race", "contest", "competition"))]
    return g.say(Clause(subj, aux, [], main, rest, False)) + ["."]


def passive(g: Grammar) -> list[str]:
    """"The letter was written by the miller's daughter in nineteen twelve." """
    verb = g.pick([v for v in g.object_verbs if v.base not in ("have", "get")])
    kind = g.pick(g.noun_objects(verb))
    subj = g.person() if kind in PEOPLE else g.noun_phrase(kind)
    tense = g.pick(("past", "past", "present", "perfect", "future", "modal"))
    aux, main = g.copula(subj, tense)
    rest = [verb.pp]
    if g.chance(0.35):
        rest += ["by", *g.person(pronoun=False).words]
    if g.chance(0.25):
        rest += g.location()
    if g.chance(0.25):
        rest += g.time_phrase(WHEN[tense] if tense != "present" else "habit")
    return g.say(Clause(subj, aux, [], main, rest, g.chance(0.1))) + ["."]
