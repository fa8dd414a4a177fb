"""Security: no dynamic code or unpickling of input, credentials only from the environment
or a URL and never echoed, and no credential in anything committed.

The scans are plain pattern and AST searches, each shown to fire on a planted sample so a
scan that silently matches nothing cannot pass for a clean tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("simulator", "real_adapters")

# --------------------------------------------------------------------------- dynamic code

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "input"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("yaml", "load"), ("yaml", "unsafe_load"),
                   ("yaml", "full_load")}
GREP = re.compile(r"\b(eval|exec|__import__)\s*\(|\bimport\s+(c?pickle|marshal|shelve|dill)\b|"
                  r"\bfrom\s+(c?pickle|marshal|shelve|dill)\s+import\b|shell\s*=\s*True|os\.system\(")


def _allowed_exec(path: Path, node: ast.Call) -> bool:
    """The one allowed use: the lessons run their *own* solution code (module constants
    registered with ``add(...)`` in the same file), never text from a user."""
    if path.relative_to(ROOT).as_posix() != "simulator/lessons/solutions.py":
        return False
    source = ast.unparse(node)
    return source.startswith(("exec(compile(SOLUTIONS[", "compile(SOLUTIONS["))


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def dangerous_uses(path: Path, text: str | None = None) -> list[str]:
    text = path.read_text(encoding="utf-8") if text is None else text
    found = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        where = f"{path.relative_to(ROOT) if path.is_absolute() else path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in FORBIDDEN_CALLS and not _allowed_exec(path, node):
                found.append(f"{where} {fn.id}()")
            elif isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
                if (fn.value.id, fn.attr) in FORBIDDEN_ATTRS or fn.value.id in FORBIDDEN_MODULES:
                    found.append(f"{where} {fn.value.id}.{fn.attr}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where} shell=...")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} import {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
    return found


def test_no_eval_exec_or_unpickling_in_the_package() -> None:
    files = list(source_files())
    assert len(files) > 20, "the scan found no source: it would pass vacuously"
    found = [hit for path in files for hit in dangerous_uses(path)]
    assert not found, "dynamic code or unpickling in the package:\n  " + "\n  ".join(found)


def test_grep_agrees_with_the_ast_scan() -> None:
    hits = []
    for path in source_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if GREP.search(line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    allowed = [h for h in hits if h.startswith("simulator/lessons/solutions.py:") and "exec(compile(SOLUTIONS[" in h]
    assert hits == allowed, "\n".join(hits)


@pytest.mark.parametrize("planted", [
    "eval(user_text)", "exec(body)", "import pickle", "from marshal import loads",
    "pickle.loads(raw)", "os.system(cmd)", "subprocess.run(cmd, shell=True)", "yaml.load(f)",
    "__import__(name)", "compile(text, 'x', 'exec')"])
def test_the_scan_sees_a_planted_use(planted: str) -> None:
    fake = ROOT / "simulator" / "planted.py"
    assert dangerous_uses(fake, planted + "\n"), planted


# --------------------------------------------------------------------------- credentials in, masked out

def test_credentials_come_only_from_the_environment_or_a_url() -> None:
    from simulator.cli import build_parser

    parser = build_parser()
    options: list[str] = []
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:  # noqa: SLF001 - argparse keeps no public list
            options += action.option_strings
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                stack += list(action.choices.values())
    assert options, "no options found"
    secret_words = {"password", "passwd", "pass", "pw", "pwd", "secret", "token", "credential",
                    "credentials", "apikey", "auth"}
    secret_like = [o for o in options if secret_words & set(o.lstrip("-").split("-"))
                   or "api-key" in o]
    assert not secret_like, f"a command-line option takes a secret (visible in ps): {secret_like}"


@pytest.mark.parametrize("url, hidden", [
    ("amqp://app:s3cret@10.0.0.5:5672/%2F", "s3cret"),
    ("amqps://app:p%40ss@broker.example:5671/vh", "p%40ss"),
    ("redis://:r3dispw@127.0.0.1:6379/0", "r3dispw"),
    ("postgresql://app:pgpw99@db.example:5432/mqlab", "pgpw99"),
    ("postgresql://app@db.example/mqlab?password=qpw123&sslmode=require", "qpw123"),
])
def test_settings_never_show_a_password(url: str, hidden: str) -> None:
    from real_adapters.settings import Settings, mask

    assert hidden not in mask(url) and "***" in mask(url)
    scheme = url.split(":", 1)[0]
    variable = {"amqp": "MQLAB_AMQP_URL", "amqps": "MQLAB_AMQP_URL", "redis": "MQLAB_REDIS_URL"}.get(
        scheme, "MQLAB_DATABASE_URL")
    settings = Settings.from_env({variable: url})
    assert hidden not in repr(settings) and hidden not in str(settings)


_URL_NAME = re.compile(r"url|dsn|uri", re.IGNORECASE)


def unmasked_url_prints(path: Path, text: str | None = None) -> list[str]:
    """f-strings and print/log calls that show a *url* variable without ``mask(...)``."""
    text = path.read_text(encoding="utf-8") if text is None else text
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FormattedValue):
            shown = ast.unparse(node.value)
            if _URL_NAME.search(shown) and not shown.startswith(("mask(", "_mask(", "masked(")):
                found.append(f"{path.name}:{node.lineno} {{{shown}}}")
    return found


def test_urls_are_printed_masked() -> None:
    hits = [hit for path in source_files() for hit in unmasked_url_prints(path)]
    assert not hits, "a URL is formatted into text without mask():\n  " + "\n  ".join(hits)
    assert unmasked_url_prints(Path("planted.py"), "print(f'connecting to {amqp_url}')\n")
    assert not unmasked_url_prints(Path("planted.py"), "print(f'connecting to {mask(amqp_url)}')\n")


# --------------------------------------------------------------------------- committed artifacts

MASKED = "***"
CREDENTIAL_PATTERNS = {
    # scheme://user:password@ with anything but the masked form as the password
    "url with inline password": re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"\\<>]*:(?P<pw>[^\s@/'\"\\<>]+)@",
                                           re.IGNORECASE),
    "aws access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "aws secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "password assignment": re.compile(r"(?i)\b(?:password|passwd|pwd)\b\s*[=:]\s*['\"](?P<pw>[^'\"\s]{4,})['\"]"),
}
# the masked form MQ Lab prints, and documentation placeholders like user[:password]@ or
# user:<password>@ (a real password is not spelled "password")
PLACEHOLDER = re.compile(r"^[\[<{$(]*(?:password|passwd|pass|pw|secret|\*+|%2A%2A%2A|x{3,}|\.{3})[\]>})]*$",
                         re.IGNORECASE)


def credential_leaks(text: str) -> list[str]:
    leaks = []
    for name, pattern in CREDENTIAL_PATTERNS.items():
        for m in pattern.finditer(text):
            pw = m.groupdict().get("pw")
            if pw is not None and PLACEHOLDER.match(pw):
                continue  # masked on purpose, or a placeholder in prose
            leaks.append(f"{name}: {m.group(0)[:60]!r}")
    return leaks


def committed_artifacts() -> list[Path]:
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    paths += [p for p in [ROOT / "benchmarks" / "RESULTS.md"] if p.exists()]
    out = ROOT / "out"
    if out.is_dir():
        paths += sorted(p for p in out.rglob("*") if p.is_file())
    return paths


def test_no_credentials_in_notebooks_results_or_out() -> None:
    leaks = []
    for path in committed_artifacts():
        # latin-1 never fails, so images and other binaries are searched too (text chunks)
        text = path.read_bytes().decode("latin-1")
        leaks += [f"{path.relative_to(ROOT)}: {leak}" for leak in credential_leaks(text)]
    assert not leaks, "credentials in committed files:\n  " + "\n  ".join(leaks)


@pytest.mark.parametrize("sample", [
    "amqp://guest:guest@127.0.0.1:5672/%2F",
    "see postgresql://app:hunter22@db:5432/x for details",
    '"redis://:t0ps3cret@cache:6379/0"',
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    'password = "correct-horse"',
])
def test_the_credential_scan_sees_a_planted_secret(sample: str) -> None:
    assert credential_leaks(sample), sample


@pytest.mark.parametrize("sample", [
    "amqp://guest:***@127.0.0.1:5672/%2F",
    "postgresql://postgres@127.0.0.1:5432/test",
    "redis://127.0.0.1:6379/0",
    "sqlite:////tmp/mqlab.sqlite",
    "https://www.rabbitmq.com/docs/confirms",
    'password = "***"',
    "postgresql://user[:password]@host:5432/db",
    "amqp://user:<password>@host/%2F",
    "amqps://USER:PASSWORD@broker",
])
def test_the_credential_scan_lets_masked_and_password_free_urls_pass(sample: str) -> None:
    assert not credential_leaks(sample), sample
