"""The app's secret key, judged where it lives: at import, in the worker.

The key signs sessions and CSRF tokens. It must come from outside the
code (the environment, better a credential), be the same in every
worker (else a session made by one is refused by the others), be long
and random, and never be a framework's or a tutorial's default. The
value never leaves this process: what is reported is where it came
from, how strong it looks, and a 10-bit keyed fingerprint that tells
two workers' keys apart and nothing more.
"""

import hashlib
import hmac
import math
import os
import sys

# Where a key came from: the numbers travel in the end frame's flags
# (pkg/wire KeyReport).
NONE, ENV, CREDENTIAL, LITERAL, DEFAULT, PROCESS = range(6)
SOURCES = {NONE: "none", ENV: "environment", CREDENTIAL: "credential", LITERAL: "literal",
           DEFAULT: "default", PROCESS: "process"}

PRESENT = 1 << 15
SOURCE_SHIFT = 12
WEAK = 1 << 11
DJANGO_UNSAFE = 1 << 10
PRINT_MASK = 0x3FF

# Keys of the common extensions, judged as the framework's own is.
FLASK_KEYS = ("SECRET_KEY", "JWT_SECRET_KEY", "WTF_CSRF_SECRET_KEY", "SECURITY_PASSWORD_SALT")

# Values seen in tutorials and generated projects, compared lower-cased
# with "-", "_" and spaces taken out.
DEFAULTS = {"dev", "devkey", "development", "developmentkey", "secret", "secretkey", "mysecret",
            "mysecretkey", "yoursecretkey", "supersecret", "supersecretkey", "changeme", "changethis",
            "changeit", "password", "test", "testing", "testkey", "default", "insecure", "key",
            "notsecret", "replaceme", "flask", "django", "keepitsecret", "keepitsecretkeepitsafe"}

FINGERPRINT_KEY = b"edged app key fingerprint v1"


def judge(app, directory, credentials=()):
    """A report on the app's keys: a dict (no value in it), or None when
    the app has no key edged can see (not Flask nor Django, or no key)."""
    found = _django() or _flask(app)
    if found is None:
        return None
    framework, keys, extra = found
    keys = [(name, v) for name, v in keys if v]
    if not keys:
        return dict(framework=framework, source=SOURCES[NONE], where="", keys=[], weak=False,
                    bits=0, fingerprint=0, **extra)
    worst = None
    for name, value in keys:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        source, where = _source(raw, value, directory, credentials, extra.get("settings_file"))
        bits = _bits(raw)
        r = (source, where, bits, name)
        if worst is None or _rank(r) > _rank(worst):
            worst = r
    source, where, bits, name = worst
    mac = hmac.new(FINGERPRINT_KEY, digestmod=hashlib.sha256)
    for _, value in keys:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        mac.update(len(raw).to_bytes(4, "little") + raw)
    extra.pop("settings_file", None)
    return dict(framework=framework, source=SOURCES[source], where=where, keys=[n for n, _ in keys],
                key=name, weak=bits < 256, bits=bits,
                fingerprint=int.from_bytes(mac.digest()[:2], "little") & PRINT_MASK, **extra)


def _rank(r):
    source, _, bits, _ = r
    return ({DEFAULT: 4, LITERAL: 3, PROCESS: 2}.get(source, 0), -bits)


def word(report):
    """The report as the 16 bits of the end frame's flags (0: none)."""
    if report is None:
        return 0
    source = {v: k for k, v in SOURCES.items()}[report["source"]]
    w = PRESENT | source << SOURCE_SHIFT | report["fingerprint"]
    if report["weak"] and source != NONE:
        w |= WEAK
    if report.get("debug") or report.get("allowed_any"):
        w |= DJANGO_UNSAFE
    return w


def _django():
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    try:
        s = conf.settings
        if not s.configured:
            return None
        key = getattr(s, "SECRET_KEY", "")
        debug = bool(getattr(s, "DEBUG", False))
        hosts = list(getattr(s, "ALLOWED_HOSTS", []) or [])
    except Exception:
        return None
    mod = sys.modules.get(os.environ.get("DJANGO_SETTINGS_MODULE", ""))
    return ("django", [("SECRET_KEY", key)],
            dict(debug=debug, allowed_any="*" in hosts, settings_file=getattr(mod, "__file__", None)))


def _flask(app):
    seen = set()
    todo = [app]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or len(seen) > 8:
            continue
        seen.add(id(obj))
        config = getattr(obj, "config", None)
        if isinstance(config, dict) and "SECRET_KEY" in config:
            return ("flask", [(k, config.get(k)) for k in FLASK_KEYS if k in config], {})
        # Middleware wraps the app: look one level in.
        for attr in ("app", "application", "wsgi_app", "__wrapped__", "__self__"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                todo.append(inner)
    return None


def _source(raw, value, directory, credentials, settings_file):
    """Where the key came from, and where in the code when it is there."""
    for name, v in os.environ.items():
        if v and (v == value or v.encode("utf-8", "surrogateescape") == raw):
            return (CREDENTIAL if name in credentials else ENV), name
    norm = raw.decode("latin-1").lower().replace("-", "").replace("_", "").replace(" ", "")
    if raw.startswith(b"django-insecure-") or norm in DEFAULTS:
        where = _literal(raw, directory, settings_file)
        return DEFAULT, where
    where = _literal(raw, directory, settings_file)
    if where:
        return LITERAL, where
    return PROCESS, ""


def _literal(raw, directory, settings_file):
    """file:line of the first quoted occurrence of the key in the app's
    own source (the modules loaded from its directory)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    needles = ['"%s"' % text, "'%s'" % text]
    files = []
    if settings_file:
        files.append(settings_file)
    root = os.path.abspath(directory or ".")
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and f.endswith(".py") and os.path.abspath(f).startswith(root + os.sep):
            files.append(f)
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    if any(s in line for s in needles):
                        return "%s:%d" % (os.path.relpath(f, root) if f.startswith(root) else f, n)
        except OSError:
            continue
    return ""


def _bits(raw):
    """The randomness a key can hold, estimated: its length times the bits
    of the alphabet it is drawn from (hex, base64, printable, any byte),
    or of the letters it uses when they are far fewer than a random draw
    from that alphabet would show (a word, a repeated pattern)."""
    if not raw:
        return 0
    s = set(raw)
    if s <= set(b"0123456789abcdef") or s <= set(b"0123456789ABCDEF"):
        alphabet = 16
    elif s <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_"):
        alphabet = 64
    elif all(32 <= c < 127 for c in raw):
        alphabet = 95
    else:
        alphabet = 256
    n = len(raw)
    expected = alphabet * (1 - (1 - 1 / alphabet) ** n)
    per = math.log2(alphabet) if len(s) >= 0.6 * expected else math.log2(max(len(s), 1))
    return int(per * n)
