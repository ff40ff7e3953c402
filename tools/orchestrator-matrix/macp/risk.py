"""The risk lexicon (pure; seed 003, "Risk Lexicon Override").

A task whose title, description or brief mentions a risky term (security, auth, credentials,
production, deploy, migration, rollback, drop table, rm -rf, sudo, ...) is held for a person
before dispatch. Word terms match at the start of a word, case-insensitively (``deploy``
matches "Deployment", ``auth`` matches "authentication"); terms with other characters
(``rm -rf``) match anywhere.
"""

from __future__ import annotations

import re


def risk_term(text: str, lexicon: list[str]) -> str | None:
    """The first lexicon term found in ``text``, or None."""
    for term in lexicon:
        if re.fullmatch(r"[\w ]+", term):
            pattern = r"(?<![A-Za-z0-9_])" + r"\s+".join(re.escape(word) for word in term.split())
        else:
            pattern = re.escape(term)
        if re.search(pattern, text, re.IGNORECASE):
            return term
    return None
