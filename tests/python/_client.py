"""What the client scripts (client_compat.py, pipeline_reads.py) share: the official
shotgun_api3 client from their arguments, and the JSON dump of the answers.

Each script runs as `python SCRIPT.py BASE_URL SCRIPT_NAME API_KEY OUT.json`, so this
directory is on sys.path and `import _client` finds this module.
"""
import datetime
import json
import sys

import shotgun_api3


def connect():
    """The client for BASE_URL with SCRIPT_NAME and API_KEY (sys.argv), and the OUT.json path."""
    base_url, script_name, api_key, out = sys.argv[1:5]
    return shotgun_api3.Shotgun(base_url, script_name=script_name, api_key=api_key), out


def plain(value):
    """JSON-able form of what the client returns (it turns date-times into datetime objects)."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def dump(calls, out):
    """Writes every call's answer to `out` as JSON."""
    with open(out, "w") as f:
        json.dump(plain(calls), f, indent=1, sort_keys=True)
