#!/usr/bin/env python3
"""apply-config-from-env.py [--prefix PREFIX] FILE...: settings from the environment into config files.

The chaoslab image's implementation of the contract the official Apache Pulsar image offers under
the same name (written for this lab, not taken from Pulsar), so that one command line configures
either image:

    clusterName=lab PULSAR_PREFIX_myNewKey=1 bin/apply-config-from-env.py conf/broker.conf

For each FILE, rewritten in place:
- a key is what stands before the first '=' of a non-blank line, with one leading '#' removed and
  surrounding blanks stripped: `#key=value` (a setting shipped commented out) is a key too; when a
  key stands on several lines, the last one is its line;
- an environment variable named exactly like a key replaces that key's line with `key=value`;
- a variable PREFIX<key> (PULSAR_PREFIX_ by default) does the same for <key>, and when the file
  has no such key appends `key=value` at the end; it wins over a plain variable of the same key;
- values are stripped of surrounding whitespace; every other line is kept as it was.

Where this one differs on purpose: a value with a line break (it would write a second setting)
stops the script with status 2 before any file is written; a variable with nothing after the
prefix is ignored; a file that does not end with a line break gets one before the appended
settings, and none is added otherwise. Values of keys that look secret are not printed.

Only `os` and `sys`: it runs on python3-minimal (the lab's JRE image).
"""

import os
import sys

DEFAULT_PREFIX = "PULSAR_PREFIX_"
SECRET_WORDS = ("password", "secret", "token", "authenticationparameters")


def usage(status):
    sys.stderr.write("usage: apply-config-from-env.py [--prefix PREFIX] FILE...\n")
    sys.exit(status)


def parse_args(argv):
    prefix, files = DEFAULT_PREFIX, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            usage(0)
        elif arg == "--prefix":
            if i + 1 >= len(argv):
                usage(1)
            prefix = argv[i + 1]
            i += 1
        elif arg.startswith("--prefix="):
            prefix = arg[len("--prefix="):]
        else:
            files.append(arg)
        i += 1
    if not files or not prefix:
        usage(1)
    return prefix, files


def shown(key, value):
    return "********" if any(word in key.lower() for word in SECRET_WORDS) else value


def key_of(line):
    """The key a config line sets (or shows commented out), or None."""
    text = line.strip()
    if not text or "=" not in text:
        return None
    key = text.split("=", 1)[0]
    if key.startswith("#"):
        key = key[1:]
    return key.strip() or None


def wanted(environ, prefix):
    """(plain, prefixed): {name: value} of every variable, {key: value} of the PREFIX ones; the
    value is None when it holds a line break after stripping."""
    plain, prefixed = {}, {}
    for name in sorted(environ):
        value = environ[name].strip()
        plain[name] = None if ("\n" in value or "\r" in value) else value
        if name.startswith(prefix) and name[len(prefix):]:
            prefixed[name[len(prefix):]] = plain[name]
    return plain, prefixed


def split_lines(text):
    """The lines of `text`, each with its line feed (the last may have none)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def apply(path, plain, prefixed):
    """(new text of `path`, what was done); ValueError names a value that cannot be written (a
    variable with a line break only matters when it names a key of this file or has the prefix)."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        lines = split_lines(f.read())
    where = {}
    for i, line in enumerate(lines):
        key = key_of(line)
        if key is not None:
            where[key] = i
    changes = [(name, value, "Applying") for name, value in plain.items() if name in where]
    changes += [(key, value, "Updating" if key in where else "Adding") for key, value in prefixed.items()]
    for key, value, _ in changes:
        if value is None:
            raise ValueError(f"{path}: the value for {key} has a line break; no file was written")
    appended, said = [], []
    for key, value, how in changes:
        if how == "Adding":
            appended.append(f"{key}={value}\n")
        else:
            lines[where[key]] = f"{key}={value}\n"
        said.append(f"[{path}] {how} config {key} = {shown(key, value)}")
    if appended and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines + appended), said


def main(argv, environ, out=sys.stdout):
    prefix, files = parse_args(argv)
    plain, prefixed = wanted(environ, prefix)
    done = []
    try:
        for path in files:   # every file is read and checked before the first is written
            done.append((path, *apply(path, plain, prefixed)))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"apply-config-from-env.py: {exc}\n")
        return 2
    for path, text, said in done:
        with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
        for line in said:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
