"""A local emulator of Tencent Cloud DBbrain API 3.0 (version 2021-05-27) for tests.

The bot's real Tencent SDK talks to it through
``HttpProfile(protocol="http", endpoint=emulator.netloc)``. It checks requests the way DBbrain
does (TC3-HMAC-SHA256 signature, version, timestamp, parameters), keeps kill tasks in memory,
and lets tests script faults and observe every call.

Each instance's sessions come from a backend (standins.sessions): a real MySQL/MariaDB server
(``MySQLSessions``, needs PyMySQL) or rows in memory (``SimulatedSessions``, what
``set_process_list`` sets). A kill task really runs: a thread sweeps the process list about once
a second and kills every session matching all of its filters, the way DBbrain's does. The
matching rules are written here, independently of the bot's, because the emulator plays DBbrain.

Instances live in regions and accounts (``place(instance, region, account)``; unplaced ones
live in ``ap-guangzhou`` and account ``default``). ``DescribeDiagDBInstances`` lists the
caller's account, in pages. A call about an instance without ``X-TC-Region`` is refused with
``MissingParameter`` (Region is a required common parameter there, and that is DBbrain's code
for a missing one); with another region, or with a key of another account, with
``ResourceNotFound``, because a region's DBbrain only knows its own instances and answers as
for an instance that does not exist. Keys belong to account ``default`` unless ``key_accounts``
says otherwise; temporary keys granted by the STS stand-in (``standins.sts``) need their token
and stop working when they expire (``AuthFailure.TokenFailure``).

Where things are:

- ``server``: a Tencent Cloud API endpoint in general (HTTP, signature, scripted faults, calls);
- ``signing``: the TC3-HMAC-SHA256 check, for any service name;
- ``emulator``: ``DbbrainEmulator``, DBbrain's instances and state, and the test set-up;
- ``actions``: what each action does, in the ACTIONS table; ``params``: their parameter checks;
- ``kills``: kill tasks and their sweeping threads, and KillMySqlThreads' prepared kills;
- ``matching``: which sessions a kill task kills, and which it never does;
- ``calls``: the Call record and ApiError; ``cli``: the command line and its config file.

Run by hand::

    python -m standins.dbbrain --port 9100 --key AKID=secret \
        --instance cdb-rehearsal=mysql://root@127.0.0.1:3306/ --instance cdb-dry
    python -m standins.dbbrain --config emulator.yaml

where the config file (JSON, or YAML with PyYAML) looks like
``{"keys": {"AKID": "secret"}, "kill_interval": 1.0, "instances": {"cdb-rehearsal":
"mysql://root@127.0.0.1:3306/", "cdb-dry": [{"ID": 7, "User": "app", ...}], "cdb-empty": null}}``.
"""

from standins.dbbrain.calls import ApiError, Call
from standins.dbbrain.cli import backend_from, load_config, main
from standins.dbbrain.emulator import (
    API_VERSION,
    DEFAULT_KEYS,
    SERVICE,
    SQL_EXEC_TTL,
    DbbrainEmulator,
)
from standins.dbbrain.matching import SYSTEM_COMMANDS, SYSTEM_USERS, KillFilter, is_system
from standins.dbbrain.params import LIST_ITEMS
from standins.dbbrain.server import SCRIPT_KEYS, CloudApiServer
from standins.dbbrain.signing import AUTH_RE, MAX_CLOCK_SKEW, tc3_signature

__all__ = [
    "API_VERSION",
    "AUTH_RE",
    "DEFAULT_KEYS",
    "LIST_ITEMS",
    "MAX_CLOCK_SKEW",
    "SCRIPT_KEYS",
    "SERVICE",
    "SQL_EXEC_TTL",
    "SYSTEM_COMMANDS",
    "SYSTEM_USERS",
    "ApiError",
    "Call",
    "CloudApiServer",
    "DbbrainEmulator",
    "KillFilter",
    "backend_from",
    "is_system",
    "load_config",
    "main",
    "tc3_signature",
]
