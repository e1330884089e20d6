"""Quarantine reason codes: one place that names every way a row can be rejected.

Codes in ``INFORMATIONAL`` are accounted (quarantined with the reason, so nothing is lost) but are
not defects and do not count towards a dataset's ``bad_ratio``.
"""

from __future__ import annotations

# file level: every row of the file (or the file itself, when it has none) gets the code
EMPTY_FILE = "empty_file"
WRONG_DELIMITER = "wrong_delimiter"
MISSING_COLUMN = "missing_column"
# row level, while parsing
MALFORMED_ROW = "malformed_row"
INVALID_ENCODING = "invalid_encoding"
MALFORMED_JSON_PAGE = "malformed_json_page"
HTTP_ERROR_PAGE = "http_error_page"
UNPARSEABLE = {"int": "unparseable_int", "float": "unparseable_float",
               "timestamp": "unparseable_timestamp", "date": "unparseable_date"}
# row level, Pandera checks (check names are these codes)
NULL_KEY = "null_key"
NULL_VALUE = "null_value"
DUPLICATE_KEY = "duplicate_key"
SUPERSEDED_BY_API = "superseded_by_api"

INFORMATIONAL = frozenset({SUPERSEDED_BY_API})
