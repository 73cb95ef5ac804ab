"""Build lexicons/gender_neutral.csv from a dictionary word list (Bartl & Leavy's catalogue method).

    python lexicons/build_gender_neutral.py          # rewrites lexicons/gender_neutral.csv

1. Collect candidate nouns by affix from the english-words GCIDE list: suffixes -man, -woman, -boy, -girl, -ess; prefixes man-, woman-.
2. Keep a -man/-woman/-boy/-girl candidate only if the part before the
   suffix is itself a dictionary word (chair-man, fire-man, sales-man): this
   drops most false positives by itself (german, ramen, human, roman,
   talisman, shaman). Prefixed (man-, woman-) and -ess nouns come from the
   curated table, since the affix alone admits mandate or process.
3. Drop everything in exclusions.csv (documented false positives: surnames,
   non-person nouns such as chessman, misspellings and archaic forms).
4. Map each survivor to a neutral replacement: the curated table first
   (fireman -> firefighter, stewardess -> flight attendant), otherwise a
   rule (-man/-woman -> -person, -ess -> the base noun if it is a word).

The output lists singular forms only; the rewrite engine inflects them
(plurals, possessives, capitalisation). Review the diff of the CSV after
regenerating: the table, the exclusions and the rules are all data here.
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Curated replacements: where "-person" reads badly or a standard neutral term exists.
CURATED = {
    "fireman": "firefighter", "policeman": "police officer", "policewoman": "police officer",
    "mailman": "mail carrier", "postman": "mail carrier", "postwoman": "mail carrier",
    "salesman": "sales representative", "saleswoman": "sales representative",
    "businessman": "businessperson", "businesswoman": "businessperson",
    "chairman": "chairperson", "chairwoman": "chairperson", "spokesman": "spokesperson",
    "spokeswoman": "spokesperson", "congressman": "member of Congress", "congresswoman": "member of Congress",
    "cameraman": "camera operator", "camerawoman": "camera operator", "fisherman": "fisher",
    "foreman": "supervisor", "forewoman": "supervisor", "workman": "worker", "workwoman": "worker",
    "craftsman": "artisan", "craftswoman": "artisan", "anchorman": "anchor", "anchorwoman": "anchor",
    "weatherman": "meteorologist", "weatherwoman": "meteorologist", "repairman": "repairer",
    "handyman": "handyperson", "deliveryman": "courier", "garbageman": "garbage collector",
    "dustman": "refuse collector", "milkman": "milk deliverer", "doorman": "door attendant",
    "watchman": "guard", "nightwatchman": "night guard", "middleman": "intermediary",
    "layman": "layperson", "laywoman": "layperson", "freshman": "first-year student",
    "serviceman": "service member", "servicewoman": "service member", "airman": "aviator",
    "seaman": "sailor", "nobleman": "noble", "noblewoman": "noble", "countryman": "compatriot",
    "countrywoman": "compatriot", "kinsman": "relative", "kinswoman": "relative",
    "sportsman": "athlete", "sportswoman": "athlete", "statesman": "diplomat", "stateswoman": "diplomat",
    "newsman": "journalist", "newswoman": "journalist", "caveman": "cave dweller",
    "frontiersman": "frontier settler", "lineman": "line worker", "linesman": "line judge",
    "cattleman": "rancher", "cowman": "rancher", "stuntman": "stunt performer", "stuntwoman": "stunt performer",
    "showman": "performer", "showwoman": "performer", "patrolman": "patrol officer", "patrolwoman": "patrol officer",
    "councilman": "council member", "councilwoman": "council member", "alderman": "council member",
    "alderwoman": "council member", "assemblyman": "assembly member", "assemblywoman": "assembly member",
    "ombudsman": "ombudsperson", "barman": "bartender", "barmaid": "bartender", "bellman": "bellhop",
    "bellboy": "bellhop", "busboy": "busser", "paperboy": "newspaper carrier", "papergirl": "newspaper carrier",
    "newsboy": "newspaper carrier", "schoolboy": "schoolchild", "schoolgirl": "schoolchild",
    "cowboy": "cowhand", "cowgirl": "cowhand", "batboy": "bat handler", "ballboy": "ball kid",
    "ballgirl": "ball kid", "stableboy": "stable hand", "errandboy": "errand runner", "callboy": "call runner",
    "stewardess": "flight attendant", "air hostess": "flight attendant",
    "actress": "actor", "waitress": "server", "hostess": "host", "heiress": "heir",
    "poetess": "poet", "authoress": "author", "sculptress": "sculptor", "manageress": "manager",
    "headmistress": "head teacher", "headmaster": "head teacher", "schoolmistress": "teacher",
    "schoolmaster": "teacher", "seamstress": "sewer", "governess": "tutor", "proprietress": "proprietor",
    "postmistress": "postmaster", "usherette": "usher", "comedienne": "comedian", "executrix": "executor",
    "aviatrix": "aviator", "songstress": "singer", "murderess": "murderer", "temptress": "tempter",
    "laundress": "launderer", "huntsman": "hunter", "huntswoman": "hunter",
    "horseman": "rider", "horsewoman": "rider", "manservant": "servant",
    "maidservant": "servant", "mankind": "humankind", "manpower": "workforce", "manhole": "maintenance hole",
    "man-made": "artificial", "manmade": "artificial", "manhour": "person-hour", "man-hour": "person-hour",
    "manhunt": "search", "everyman": "everyone", "gentleman": "person", "gentlewoman": "person",
    "landlord": "property owner", "landlady": "property owner", "housewife": "homemaker",
    "househusband": "homemaker", "cleaning lady": "cleaner", "cleaning woman": "cleaner",
    "fishwife": "fishmonger", "hangman": "executioner",
    "marksman": "sharpshooter", "markswoman": "sharpshooter", "journeyman": "journeyworker",
    "tradesman": "tradesperson", "tradeswoman": "tradesperson", "draftsman": "drafter",
    "draughtsman": "drafter", "draftswoman": "drafter", "yachtsman": "sailor", "yachtswoman": "sailor",
    "oarsman": "rower", "oarswoman": "rower", "boatman": "boat operator", "ferryman": "ferry operator",
    "lumberman": "lumberjack", "woodsman": "forester", "woodman": "forester", "gunman": "shooter",
    "hitman": "hired killer", "henchman": "accomplice", "swordsman": "fencer", "swordswoman": "fencer",
    "bowman": "archer", "rifleman": "rifle shooter", "infantryman": "infantry soldier",
    "militiaman": "militia member", "guardsman": "guard", "clergyman": "member of the clergy",
    "clergywoman": "member of the clergy", "churchman": "church member", "churchwoman": "church member",
    "committeeman": "committee member", "committeewoman": "committee member", "jurywoman": "juror",
    "juryman": "juror", "foreman of the jury": "jury foreperson", "warehouseman": "warehouse worker",
    "longshoreman": "dockworker", "dockman": "dockworker", "trashman": "garbage collector",
    "ragman": "rag collector", "iceman": "ice deliverer", "coalman": "coal deliverer", "tallyman": "tally keeper",
    "penman": "writer", "penwoman": "writer", "husbandman": "farmer", "herdsman": "herder", "herdswoman": "herder",
    "herdman": "herder", "stockman": "stock farmer", "dairyman": "dairy farmer", "dairywoman": "dairy farmer",
    "ranchman": "rancher", "coachman": "coach driver", "cabman": "cab driver", "drayman": "dray driver",
    "footman": "attendant", "houseman": "house officer", "groomsman": "groom's attendant",
    "bridesman": "bride's attendant", "headman": "village leader", "headsman": "executioner",
    "deathsman": "executioner", "highwayman": "highway robber", "hodman": "hod carrier", "bagman": "courier",
    "brakeman": "brake operator", "switchman": "switch operator", "trainman": "rail worker",
    "motorman": "motor operator", "flagman": "flagger", "gateman": "gatekeeper", "pressman": "press operator",
    "nurseryman": "nursery worker", "laundryman": "laundry worker", "charwoman": "cleaner",
    "needlewoman": "seamster", "fishwoman": "fishmonger", "beggarwoman": "beggar", "shopgirl": "shop assistant",
    "shopwoman": "shop assistant", "choirboy": "chorister", "batsman": "batter",
    "workingman": "worker", "liegeman": "vassal", "axeman": "axe wielder",
    "pikeman": "pike soldier", "spearman": "spear carrier", "cavalryman": "cavalry soldier",
    "artilleryman": "artillery soldier", "crewman": "crew member", "aircrewman": "aircrew member",
    "aircraftman": "aircraft technician", "aircraftsman": "aircraft technician", "expressman": "courier",
    "exciseman": "tax officer", "selectman": "select board member", "vestryman": "vestry member",
    "schoolman": "scholar", "bookman": "scholar",
    "priestess": "priest", "goddess": "deity", "adventuress": "adventurer", "ambassadress": "ambassador",
    "conductress": "conductor", "directress": "director", "instructress": "instructor", "inspectress": "inspector",
    "huntress": "hunter", "patroness": "patron", "shepherdess": "shepherd", "enchantress": "enchanter",
    "sorceress": "sorcerer", "mayoress": "mayor", "benefactress": "benefactor", "editress": "editor",
    "traitress": "traitor", "doctress": "doctor", "paintress": "painter", "tailoress": "tailor",
    "protectress": "protector", "giantess": "giant", "prophetess": "prophet", "chairlady": "chairperson", "forelady": "supervisor", "saleslady": "sales representative",
    "washerwoman": "laundry worker", "washerman": "laundry worker",
    "signalman": "signaller", "trawlerman": "trawler crew member",
    "timberman": "timber worker", "slaughterman": "slaughterer", "bondsman": "bail agent",
    "tinman": "tinsmith", "overman": "overseer", "nightman": "night worker", "counterman": "counter clerk",
    "moneyman": "financier", "wheelman": "driver", "toyman": "toy seller", "coffeeman": "coffee seller",
    "spaceman": "astronaut",
}  # fmt: skip

# Multiword entries the word list cannot produce; the engine matches them as token sequences.
MULTIWORD = {
    "every man": "every person", "the common man": "the average person", "man in the street": "ordinary person",
    "best man for the job": "best person for the job", "man of the house": "head of the household",
    "man of his word": "person of their word", "cleaning lady": "cleaner", "cleaning woman": "cleaner",
    "air hostess": "flight attendant", "foreman of the jury": "jury foreperson",
}  # fmt: skip


def load_exclusions() -> dict[str, str]:
    with open(HERE / "gender_neutral.exclusions.csv", newline="", encoding="utf-8") as fh:
        return {row["word"]: row["reason"] for row in csv.DictReader(line for line in fh if not line.startswith("#"))}


def candidates(words: set[str]) -> dict[str, str]:
    """word -> the affix that made it a candidate.

    A -man/-woman/-boy/-girl word is a candidate when what precedes the suffix
    is itself a dictionary word ("chair", "fire", "sale(s)", "craft(s)"): that
    keeps chairman and rules out german, human, ramen, shaman. The word lists
    hold base forms only, so plurals cannot be used as evidence. Prefixed
    (man-, woman-) and -ess words come from the curated table only: the
    affix alone admits too much (mandate, mangrove; process, address).
    """
    out = {}
    for w in words:
        if not w.isalpha():
            continue
        for suffix in ("woman", "man", "girl", "boy"):
            if w.endswith(suffix) and len(w) >= len(suffix) + 3:
                stem = w[: -len(suffix)]
                if stem in words or (stem.endswith("s") and stem[:-1] in words and len(stem) > 3):
                    out[w] = suffix
                break
    return out


def replacement(word: str, affix: str, words: set[str]) -> str | None:
    if word in CURATED:
        return CURATED[word]
    if affix in ("man", "woman"):
        stem = word[: -len(affix)]
        if stem.endswith("s") and stem[:-1] in words:  # craftsman -> craftsperson
            return stem + "person"
        return stem + "person"
    return None  # -boy/-girl: curated replacements only (no rule reads well)


def build() -> list[dict[str, str]]:
    from english_words import get_english_words_set

    words = get_english_words_set(["gcide"], lower=True)
    excluded = load_exclusions()
    rows = {}
    for word, affix in sorted(candidates(words).items()):
        if word in excluded:
            continue
        repl = replacement(word, affix, words)
        if not repl or repl == word:
            continue
        rows[word] = {"source": word, "replacement": repl, "pos": "NOUN", "notes": f"affix {affix}", "context": ""}
    for word, repl in CURATED.items():  # curated forms the dictionary lacks (e.g. stewardess in one list only)
        if repl and word not in rows and word not in excluded and repl != word:
            rows[word] = {"source": word, "replacement": repl, "pos": "NOUN", "notes": "curated", "context": ""}
    for phrase, repl in MULTIWORD.items():
        rows[phrase] = {"source": phrase, "replacement": repl, "pos": "PHRASE", "notes": "multiword", "context": ""}
    # a replacement must never itself be rewritten (no chains or cycles)
    for row in rows.values():
        if row["replacement"] in rows:
            raise SystemExit(f"{row['source']} -> {row['replacement']}, which is itself an entry")
    return sorted(rows.values(), key=lambda r: r["source"])


def main() -> None:
    rows = build()
    path = HERE / "gender_neutral.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write("# Gender-neutral substitution catalogue, built by lexicons/build_gender_neutral.py.\n")
        fh.write("# Columns: source (singular), replacement, pos (NOUN or PHRASE), notes, context.\n")
        w = csv.DictWriter(fh, fieldnames=["source", "replacement", "pos", "notes", "context"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"{path}: {len(rows)} entries ({sum(r['pos'] == 'NOUN' for r in rows)} singular nouns)")


if __name__ == "__main__":
    main()
