"""The NLTK data TextAttack needs, prepared offline from files this machine already has.

TextAttack reads nltk's English stop-word list at import time and WordNet for synonym swaps.
Neither can be downloaded here, so `prepare_nltk_data` writes the stop-word list itself and
copies WordNet 3.0 from Debian's `wordnet-base` and `wordnet-sense-index` packages
(/usr/share/wordnet), adding the `lexnames` file they lack. Copies, not links: nltk refuses
paths outside its data root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")
WORDNET_FILES = (
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
    "index.sense",
    "cntlist.rev",
)
# The 45 lexicographer files of WordNet 3.0: number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb).
LEXNAMES = (
    ("adj.all", 3),
    ("adj.pert", 3),
    ("adv.all", 4),
    ("noun.Tops", 1),
    ("noun.act", 1),
    ("noun.animal", 1),
    ("noun.artifact", 1),
    ("noun.attribute", 1),
    ("noun.body", 1),
    ("noun.cognition", 1),
    ("noun.communication", 1),
    ("noun.event", 1),
    ("noun.feeling", 1),
    ("noun.food", 1),
    ("noun.group", 1),
    ("noun.location", 1),
    ("noun.motive", 1),
    ("noun.object", 1),
    ("noun.person", 1),
    ("noun.phenomenon", 1),
    ("noun.plant", 1),
    ("noun.possession", 1),
    ("noun.process", 1),
    ("noun.quantity", 1),
    ("noun.relation", 1),
    ("noun.shape", 1),
    ("noun.state", 1),
    ("noun.substance", 1),
    ("noun.time", 1),
    ("verb.body", 2),
    ("verb.change", 2),
    ("verb.cognition", 2),
    ("verb.communication", 2),
    ("verb.competition", 2),
    ("verb.consumption", 2),
    ("verb.contact", 2),
    ("verb.creation", 2),
    ("verb.emotion", 2),
    ("verb.motion", 2),
    ("verb.perception", 2),
    ("verb.possession", 2),
    ("verb.social", 2),
    ("verb.stative", 2),
    ("verb.weather", 2),
    ("adj.ppl", 3),
)
STOPWORDS = """i me my myself we our ours ourselves you you're you've you'll you'd your yours
yourself yourselves he him his himself she she's her hers herself it it's its itself they them
their theirs themselves what which who whom this that that'll these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while
of at by for with about against between into through during before after above below to from
up down in out on off over under again further then once here there when where why how all any
both each few more most other some such no nor not only own same so than too very s t can will
just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn
mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn
wouldn't""".split()


class MissingWordNetError(RuntimeError):
    """WordNet 3.0 is not installed where the project looks for it."""


def default_nltk_root() -> Path:
    """$MOCLIP_NLTK_DATA, else ~/.cache/moclip-sweeps/nltk_data."""
    return Path(
        os.environ.get("MOCLIP_NLTK_DATA", Path.home() / ".cache" / "moclip-sweeps" / "nltk_data")
    )


def prepare_nltk_data(
    root: Path | str | None = None,
    wordnet_source: Path = DEBIAN_WORDNET,
    require_wordnet: bool = True,
) -> Path:
    """Write stopwords and WordNet under `root` (once) and put `root` first on nltk's path."""
    root = Path(root) if root else default_nltk_root()
    stopwords = root / "corpora" / "stopwords" / "english"
    if not stopwords.is_file():
        stopwords.parent.mkdir(parents=True, exist_ok=True)
        stopwords.write_text("\n".join(STOPWORDS) + "\n", encoding="utf-8")
    wordnet = root / "corpora" / "wordnet"
    if not (wordnet / "lexnames").is_file():
        missing = [name for name in WORDNET_FILES if not (wordnet_source / name).is_file()]
        if missing and require_wordnet:
            raise MissingWordNetError(
                f"WordNet 3.0 not found in {wordnet_source} (missing {', '.join(missing[:4])}"
                f"{'...' if len(missing) > 4 else ''}); install Debian's packages: "
                f"apt-get install wordnet-base wordnet-sense-index"
            )
        if not missing:
            wordnet.mkdir(parents=True, exist_ok=True)
            for name in WORDNET_FILES:
                shutil.copyfile(wordnet_source / name, wordnet / name)
            lines = [f"{i:02d}\t{name}\t{category}" for i, (name, category) in enumerate(LEXNAMES)]
            (wordnet / "lexnames").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Imported here: nltk pulls in scipy (seconds of import), and every Ray process that
    # reads the sweep's config imports this module.
    import nltk

    # nltk keeps its search path in a module-level list; this is the one place it is changed.
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root
