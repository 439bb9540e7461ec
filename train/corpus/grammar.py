"""Phrase grammar that turns the word lists into plausible English sentences.

A speech recognizer trained on this text also learns its word statistics, so the sentences
must read like English rather than word salad. Each clause is a subject, a verb group that
agrees with it in person, number and tense, and complements chosen by coarse noun kinds
(people, animals, food, places...), so "the miller sold his old horse" is likely and "the
horse sold the miller" is not. All randomness goes through one random.Random, so a seed
fixes the output. Sentences come out as lower-case tokens (names capitalised) with the
punctuation marks "," "." "?" as separate tokens; textgen.py renders them.

This module holds the clause machinery: noun phrases, verb groups, complements, and
clauses said as statements or asked as questions. Numbers, times and places are in
spoken.py (mixed into Grammar); the sentence types built from clauses (weather, prices,
timetables, questions...) are in sentence_frames.py.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from .spoken import SpokenPhrases, number_to_words, ordinal_words
from .words import Pronoun, Verb, WordLists

# Words that grammar.py, spoken.py and sentence_frames.py write literally (auxiliaries,
# question words, glue). textgen adds them to the vocabulary; the tests check that nothing
# else slips out.
_FIXED = """
a an the and of to that than as not cannot ever more most am is are was were be been
has have had do does did will would can could should might must may going use used who what
which where when why how many much long often there it this these those please let's don't
o'clock half past quarter noon midnight at in on for from by with since ago next last every
years old born today tomorrow yesterday about nearly almost over up time century floor race
contest competition people degrees below cost costs
"""
FIXED_WORDS = frozenset(_FIXED.split())

PEOPLE = ("person", "kin")
HANDHELD = ("thing", "food", "text", "clothing")
MODALS = ("can", "could", "should", "might", "must", "would", "may")
BE_FORMS = ("am", "is", "are", "was", "were")
# Verbs that sound wrong in the progressive ("she is knowing").
_STATIVE = "know believe understand like love hate prefer want mean seem recognize deserve dislike"
STATIVE = frozenset(f"{_STATIVE} have hear see remember forget".split())
# Tense weights; WHEN maps a tense to the time expressions that fit it.
TENSES = {"past": 30, "present": 16, "future": 9, "progressive": 8, "past_progressive": 7,
          "perfect": 9, "past_perfect": 4, "modal": 11, "going_to": 4, "used_to": 2}
WHEN = {"past": "past", "past_progressive": "past", "past_perfect": "past", "used_to": "past",
        "present": "habit", "progressive": "now", "future": "future", "going_to": "future",
        "modal": "future", "perfect": "perfect"}
FAMILY = {"past": ("past", "past", "past_progressive", "past_perfect"),
          "present": ("present", "present", "progressive", "perfect"),
          "future": ("future", "future", "going_to", "modal")}
SPECIAL = ("that", "to", "ing")  # complements that embed another verb
DURATIVE = ("live", "stay", "wait", "work", "study", "sleep", "travel", "play", "know", "practice")
# Objects that follow a preposition: look at the sky, wait for the bus, listen to the rain.
PREP_OBJECTS = {"at": ("at", ("person", "animal", "thing", "vehicle", "place", "plant", "nature")),
                "for": ("for", ("person", "vehicle", "thing", "food", "text", "animal")),
                "listen": ("to", ("sound", "person", "text", "animal", "instrument"))}
NOT_ATTRIBUTIVE = ("so", "too", "quite", "awfully")  # fine in "is too old", not in "a too old"
# Adjectives that only follow a verb: "the child is asleep", never "the asleep child".
PREDICATIVE = ("asleep", "awake", "afraid", "alive", "glad", "sorry", "ready", "ill", "upset")
INDEFINITE = ("a", "one", "another", "some", "many", "several", "a few", "no", "a lot of",
              "plenty of", "dozens of", "hundreds of", "a little", "enough", "-")


class NP(NamedTuple):
    """A noun phrase plus what agreement and pronoun choice need to know about it."""

    words: list[str]
    kind: str
    person: int = 3
    plural: bool = False
    gender: str = "n"  # m / f / n(euter) / x (first and second person)
    pronoun: bool = False


class Clause(NamedTuple):
    """A clause kept in parts so it can be said as a statement or turned into a question."""

    subj: NP
    aux: list[str]  # auxiliaries; the first one moves to the front in questions
    adverb: list[str]  # frequency adverb between auxiliary and main verb
    main: list[str]
    rest: list[str]  # objects and modifiers
    negative: bool


class Grammar(SpokenPhrases):
    """Word lists and one random.Random turned into noun phrases and clauses;
    sentence_frames.sentence(grammar) makes whole sentences from them."""

    def __init__(self, lists: WordLists, rng: random.Random) -> None:
        self.lists, self.rng = lists, rng
        self.verb = {v.base: v for v in lists.verbs}
        self.verbs_for: dict[str, list[Verb]] = {}  # subject kind -> verbs, in file order
        self.simple_for: dict[str, list[Verb]] = {}  # ... that need no embedded verb
        self.taking: dict[str, list[Verb]] = {}  # object noun kind -> verbs
        for verb in lists.verbs:
            for kind in verb.subjects:
                self.verbs_for.setdefault(kind, []).append(verb)
                if any(o not in SPECIAL for o in verb.objects):
                    self.simple_for.setdefault(kind, []).append(verb)
            for kind in verb.objects:
                if kind in lists.nouns and verb.subjects != ("-",):
                    self.taking.setdefault(kind, []).append(verb)
        self.clause_verbs = [v for v in lists.verbs if v.subjects != ("-",)]
        self.simple_verbs = [v for v in self.clause_verbs if any(o not in SPECIAL
                                                                 for o in v.objects)]
        self.object_verbs = [v for v in self.clause_verbs
                             if "person" in v.subjects and self.noun_objects(v)]
        self.owners = [n for k in PEOPLE for n in lists.nouns[k] if not n.sg.endswith("s")]
        self.durations = {n.sg: n for n in lists.nouns["time"]}
        self.units = {n.sg: n for n in lists.nouns["unit"]}
        self.you, self.we = (next(p for p in lists.pronouns if (p.person, p.plural) == key)
                             for key in ((2, False), (1, True)))

    # -- small helpers -------------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, table: dict):
        return self.rng.choices(list(table), list(table.values()))[0]

    def phrase(self, table: dict, tag: str) -> list[str]:
        return list(self.pick(table[tag]))

    def noun_objects(self, verb: Verb) -> list[str]:
        return [o for o in verb.objects if o in self.lists.nouns and o != "body"]

    # -- noun phrases --------------------------------------------------------------------
    def pronoun_of(self, np: NP) -> Pronoun:
        for row in self.lists.pronouns:
            if (row.person, row.plural) == (np.person, np.plural) and (
                    np.person != 3 or np.plural or row.gender == np.gender):
                return row
        raise LookupError(np)

    def pronoun_np(self, row: Pronoun, case: str = "subj") -> NP:
        return NP([getattr(row, case)], "person", row.person, row.plural, row.gender, True)

    def adjective(self, kind: str, attributive: bool = True) -> list[str]:
        adj = self.pick(self.lists.adjectives[kind])
        while attributive and adj.word in PREDICATIVE:
            adj = self.pick(self.lists.adjectives[kind])
        if adj.comparative and self.chance(0.15 if attributive else 0.4):
            degree = self.phrase(self.lists.adverbs, "degree")
            if not (attributive and degree[0] in NOT_ATTRIBUTIVE):
                return degree + [adj.word]
        return [adj.word]

    def owner(self) -> list[str]:
        """A possessor: "the old miller's", "Mary's", "Mister Brown's"."""
        if self.chance(0.4):
            name = self.name().words
            if not name[-1].endswith("s"):
                return name[:-1] + [name[-1] + "'s"]
        noun = self.pick(self.owners)
        det = self.pick(("the", "the", "my", "his", "her", "our", "their", "your", "a"))
        adj = self.adjective("person") if self.chance(0.2) else []
        return [det, *adj, noun.sg + "'s"]

    def determiner(self, kind: str, count: str, owner: NP | None) -> list[str]:
        r = self.rng.random()
        if r < {"kin": 0.4, "person": 0.04}.get(kind, 0.12):
            row = self.pronoun_of(owner) if owner and self.chance(0.6) else self.pick(
                [p for p in self.lists.pronouns if p.person != 3 or p.gender != "n"])
            return [row.poss]
        if r < 0.5 and kind == "kin" or r < 0.17 and kind not in PEOPLE:
            return self.owner()
        if count == "pl" and r < 0.32:
            return number_to_words(self.count()).split()
        if count == "mass" and r < 0.35:
            measures = [m for m in self.lists.nouns["measure"] if kind in m.extra]
            if measures:
                measure = self.pick(measures)
                if self.chance(0.6):
                    return ["a", measure.sg, "of"]
                return [*number_to_words(self.count()).split(), measure.pl, "of"]
        phrases, weights = self.lists.determiners[count]
        det = list(self.rng.choices(phrases, weights)[0])
        if det == ["the"] and count == "sg" and self.chance(0.05):
            det += ordinal_words(self.rng.randint(1, 12)).split()
        return [] if det == ["-"] else det

    def noun_phrase(self, kind: str, owner: NP | None = None, plural: bool | None = None,
                    det: list[str] | None = None) -> NP:
        noun = self.pick(self.lists.nouns[kind])
        count = "mass" if noun.pl is None else "pl" if (
            self.chance(0.35) if plural is None else plural) else "sg"
        words = [noun.pl if count == "pl" else noun.sg]
        if kind in self.lists.adjectives and self.chance(0.4):
            words = self.adjective(kind) + words
        words = (self.determiner(kind, count, owner) if det is None else det) + words
        gender = "n"
        if kind in PEOPLE:
            gender = noun.extra[0] if noun.extra[0] in "mf" else self.pick("mf")
        return NP(words, kind, 3, count == "pl", gender)

    def name(self) -> NP:
        gender = self.pick("mf")
        first = self.pick(self.lists.names[gender])[0]
        if self.chance(0.7):
            return NP([first], "person", 3, False, gender)
        title, title_gender, part = self.pick(self.lists.titles)
        gender = title_gender if title_gender in "mf" else gender
        name = self.pick(self.lists.names[gender] if part == "first" else self.lists.names["surname"])
        return NP([title, name[0]], "person", 3, False, gender)

    def person(self, owner: NP | None = None, pronoun: bool = True, case: str = "subj") -> NP:
        """Someone: a pronoun, a name, "the miller's daughter" or "the old miller". With an
        owner (the clause subject) it is an object, and possessives may point back to it."""
        r = self.rng.random()
        if pronoun and r < 0.3:
            rows = [p for p in self.lists.pronouns if p.gender != "n"]
            if owner is None:
                return self.pronoun_np(self.pick(rows), case)
            # An object pronoun. "I saw me" must be "I saw myself"; "he saw him" may be either.
            row, own = self.pick(rows), self.pronoun_of(owner)
            if row.person < 3 and row.person == own.person or row == own and self.chance(0.5):
                return self.pronoun_np(own, "refl")
            return self.pronoun_np(row, "obj")
        if r < 0.5:
            return self.name()
        if r < 0.58:
            np = self.noun_phrase("kin", det=[])
            return np._replace(words=self.owner() + np.words)
        return self.noun_phrase("kin" if self.chance(0.35) else "person", owner, self.chance(0.25))

    def obj(self, kind: str, subj: NP) -> NP:
        if kind in PEOPLE:
            return self.person(subj if subj.kind in PEOPLE else None, case="obj")
        if kind == "animal" and subj.kind == "animal" and self.chance(0.2):
            return NP([self.pronoun_of(subj).refl], kind)  # "the cat washed itself"
        if kind == "body":
            noun = self.pick(self.lists.nouns["body"])
            plural = noun.pl is not None and (subj.plural or self.chance(0.3))
            return NP([self.pronoun_of(subj).poss, noun.pl if plural else noun.sg], kind)
        return self.noun_phrase(kind, subj if subj.kind in PEOPLE else None)

    def subject(self, verb: Verb) -> NP:
        if "vehicle" in verb.subjects and ("person" not in verb.subjects or self.chance(0.3)):
            return self.noun_phrase("vehicle", plural=self.chance(0.2))
        if "animal" in verb.subjects and ("person" not in verb.subjects or self.chance(0.25)):
            return self.noun_phrase("animal", plural=self.chance(0.3))
        return self.person()

    # -- verb phrases and clauses --------------------------------------------------------
    def verb_group(self, verb: Verb, tense: str, subj: NP, do_support: bool):
        """Auxiliaries and main verb for a tense, agreeing with the subject. do_support adds
        do/does/did where negation or a question needs an auxiliary."""
        third = subj.person == 3 and not subj.plural
        be_now, be_past = self.be(subj)
        if tense in ("progressive", "past_progressive") and verb.base in STATIVE:
            tense = "present" if tense == "progressive" else "past"
        if tense == "present":
            if do_support:
                return ["does" if third else "do"], [verb.base]
            return [], [verb.third if third else verb.base]
        if tense in ("past", "used_to") and do_support:
            return ["did"], ["use", "to", verb.base] if tense == "used_to" else [verb.base]
        return {"past": ([], [verb.past]), "used_to": ([], ["used", "to", verb.base]),
                "future": (["will"], [verb.base]), "progressive": ([be_now], [verb.ing]),
                "past_progressive": ([be_past], [verb.ing]),
                "perfect": (["has" if third else "have"], [verb.pp]),
                "past_perfect": (["had"], [verb.pp]), "modal": ([self.pick(MODALS)], [verb.base]),
                "going_to": ([be_now], ["going", "to", verb.base])}[tense]

    def be(self, subj: NP) -> tuple[str, str]:
        """Present and past of "be" for this subject: (am, was), (is, was), (are, were)."""
        if (subj.person, subj.plural) == (1, False):
            return "am", "was"
        return ("is", "was") if subj.person == 3 and not subj.plural else ("are", "were")

    def copula(self, subj: NP, tense: str) -> tuple[list[str], list[str]]:
        """Auxiliaries and main part of "be": is / was / will be / has been / might be."""
        now, past = self.be(subj)
        third = subj.person == 3 and not subj.plural
        return {"present": ([now], []), "past": ([past], []), "future": (["will"], ["be"]),
                "perfect": (["has" if third else "have"], ["been"]),
                "modal": ([self.pick(MODALS)], ["be"]),
                "going_to": ([now], ["going", "to", "be"])}[tense]

    def complement(self, verb: Verb, subj: NP, depth: int, place: bool = True) -> list[str]:
        options = [o for o in verb.objects if depth == 0 or o not in SPECIAL]
        if subj.kind == "vehicle":  # trains arrive and leave stations; they do not buy things
            options = [o for o in options if o in ("-", "move", "place", "where")]
        tag = self.pick(options or ["-"])
        if tag == "-" or tag in ("move", "where") and not place:
            return []
        if tag == "where":
            return self.location()
        if tag == "move":
            return self.destination() if self.chance(0.85) else []
        if tag == "that":
            return (["that"] if self.chance(0.7) else []) + self.say(self.clause(depth + 1))
        if tag in ("to", "ing"):
            inner = self.pick(self.simple_for[subj.kind])
            head = ["to", inner.base] if tag == "to" else [inner.ing]
            return head + self.complement(inner, subj, depth + 1, place)
        if tag in PREP_OBJECTS:
            prep, kinds = PREP_OBJECTS[tag]
            kind = self.pick(kinds)
            return [prep] + (self.place() if kind == "place" else self.obj(kind, subj).words)
        if tag == "put":
            thing = self.obj(self.pick(HANDHELD), subj).words
            return thing + self.spot() if place else thing
        if tag == "give":
            thing = self.obj(self.pick(HANDHELD), subj).words
            to = self.obj("person", subj).words
            return to + thing if self.chance(0.5) else thing + ["to"] + to
        return self.obj(tag, subj).words

    def modifiers(self, verb: Verb, subj: NP, when: str, place: bool, time: bool,
                  depth: int, bare: bool = False) -> list[str]:
        """Optional place, company, manner and time; more likely after a bare verb, since
        "the tailor sighed" reads better as "the tailor sighed quietly in the kitchen"."""
        words: list[str] = []
        scale = (0.5 if depth else 1.0) * (2.0 if bare else 1.0)
        if place and not {"move", "put", "where"} & set(verb.objects) and self.chance(
                0.3 * scale):
            words += self.location()
        if subj.kind in PEOPLE and self.chance(0.05 * scale):
            words += ["with"] + self.person(subj).words
        if self.chance(0.12 * scale):
            words += self.phrase(self.lists.adverbs, "manner")
        if time and self.chance(0.35 * scale):
            words += self.time_phrase(when)
        return words

    def clause(self, depth: int = 0, tense: str | None = None, subj: NP | None = None,
               negative: bool | None = None, question: bool = False, verb: Verb | None = None,
               place: bool = True, time: bool = True, drop_object: bool = False) -> Clause:
        if verb is None:  # embedded clauses (depth > 0) must not embed again
            if subj:
                verb = self.pick((self.simple_for if depth else self.verbs_for)[subj.kind])
            else:
                verb = self.pick(self.simple_verbs if depth else self.clause_verbs)
        subj = subj or self.subject(verb)
        tense = tense or self.weighted(TENSES)
        negative = self.chance(0.15) if negative is None else negative
        aux, main = self.verb_group(verb, tense, subj, negative or question)
        adverb: list[str] = []
        if tense in ("perfect", "past_perfect") and self.chance(0.25):
            adverb = ["ever"] if negative else self.phrase(self.lists.adverbs, "perfect")
        elif not negative and tense != "used_to" and self.chance(0.1):
            adverb = self.phrase(self.lists.adverbs, "freq")
        rest = [] if drop_object else self.complement(verb, subj, depth, place)
        rest += self.modifiers(verb, subj, WHEN[tense], place, time, depth, not rest)
        return Clause(subj, aux, adverb, main, rest, negative)

    def contract(self, first: str, second: str, p: float) -> str | None:
        return self.lists.contractions.get((first.lower(), second)) if self.chance(p) else None

    def say(self, c: Clause) -> list[str]:
        """The clause as a statement, with the usual contractions (didn't, she's, we'll)."""
        aux, subj, short_not = list(c.aux), list(c.subj.words), False
        if c.negative:
            joined = self.contract(aux[0], "not", 0.7)
            short_not = joined is not None
            aux = [joined] if joined else ["cannot"] if aux[0] == "can" else [aux[0], "not"]
            aux += c.aux[1:]
        if c.subj.pronoun and aux and not short_not and (not c.negative or aux[0] in BE_FORMS):
            joined = self.contract(subj[-1], aux[0], 0.5)
            if joined:
                subj[-1:], aux = [joined], aux[1:]
        return subj + aux + c.adverb + c.main + c.rest

    def ask(self, c: Clause, wh: list[str] | None = None) -> list[str]:
        """The clause as a question: the first auxiliary moves in front of the subject.
        A negative question needs the contracted form (didn't she...); where there is none
        (am not, may not) the question is asked positively instead."""
        first = c.aux[0]
        if c.negative:
            first = self.lists.contractions.get((first, "not"), first)
        lead = [*(wh or []), first]
        if wh and len(wh) == 1 and first == "is":
            joined = self.contract(wh[0], "is", 0.3)
            lead = [joined] if joined else lead
        return lead + c.subj.words + c.aux[1:] + c.adverb + c.main + c.rest
