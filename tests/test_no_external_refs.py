"""The repository stands alone: no references to documents a user does not have.

A user has only this repository. Every text file of it (code, docs,
notebooks, configuration, CI scripts) is scanned for references to project
notes that are not part of it (a design document, a references document, a
style guide, a ``shared`` folder beside the checkout), to issues of a tracker
by bare number (an upstream issue must be cited by its URL, e.g.
https://github.com/google-deepmind/optax/issues/1552), and to the tutorials
the project started from: say what they showed instead. The word "seed" is
for random seeds only.

The patterns below are written so that they do not match their own source,
so this file is scanned like any other.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]

TEXT_SUFFIXES = {'.py', '.md', '.ipynb', '.toml', '.cfg', '.txt', '.yml', '.yaml', '.sh', '.ini'}
# Folders whose every file is text (extensionless CI scripts).
TEXT_DIRS = {'.ci'}
# Never part of the product when walking the tree without git.
SKIP_DIRS = {
  '.git',
  '.venv',
  'venv',
  'build',
  'dist',
  '__pycache__',
  '.pytest_cache',
  '.ruff_cache',
  '.mypy_cache',
  '.hypothesis',
  '.ipynb_checkpoints',
  'rmsprop_optax_out',
  'node_modules',
  'scratch',
}

# The apostrophe may be typographic.
_APOS = "['\u2019]"
# A bare tracker number: the word issue(s), PR(s) or pull request(s), a space
# or a '#', then the number.
_BARE_NUMBER = re.compile(r'\b(?:(?i:issues?|pull requests?)|PRs?)(?: #?|#)(\d+)\b')

FORBIDDEN = {
  'design document': re.compile(r'\bDESIGN' + r'\.md\b', re.IGNORECASE),
  'references document': re.compile(r'\bREFERENCES' + r'\.md\b', re.IGNORECASE),
  'style guide': re.compile(r'\bSTYLE' + r'\.md\b', re.IGNORECASE),
  'shared folder': re.compile(r'\.\.' + r'/shared\b'),
  'the tracker issue': re.compile(r'\bthe ' + r'issue\b', re.IGNORECASE),
  'tutorials as documents': re.compile(r'\bseed ' + r'documents?\b', re.IGNORECASE),
  "tutorials' applications": re.compile(r'\bseed ' + r'applications?\b', re.IGNORECASE),
  'tutorials (possessive)': re.compile(r'\bthe seeds?' + _APOS + r's?(?!\w)', re.IGNORECASE),
  'tutorials (plural possessive)': re.compile(r'(?<!the )\bseeds' + _APOS + r'\s', re.IGNORECASE),
}


def _is_text(rel: pathlib.PurePosixPath) -> bool:
  return rel.suffix in TEXT_SUFFIXES or (len(rel.parts) > 1 and rel.parts[0] in TEXT_DIRS)


def _git_files() -> list[str] | None:
  """Tracked and untracked-but-not-ignored files, if ROOT is a git checkout."""
  if shutil.which('git') is None:
    return None
  try:
    top = subprocess.run(
      ['git', 'rev-parse', '--show-toplevel'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    if pathlib.Path(top).resolve() != ROOT:
      return None  # An unpacked sdist inside some other repository.
    out = subprocess.run(
      ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      cwd=ROOT,
      capture_output=True,
      check=True,
    ).stdout
  except (OSError, subprocess.CalledProcessError):
    return None
  return [name for name in out.decode('utf-8').split('\0') if name]


def _walk_files() -> list[str]:
  names = []
  for dirpath, dirnames, filenames in os.walk(ROOT):
    dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith('.egg-info')]
    for filename in filenames:
      names.append(pathlib.Path(dirpath, filename).relative_to(ROOT).as_posix())
  return names


def text_files() -> list[pathlib.PurePosixPath]:
  """The repository's text files, relative to its root, that exist on disk."""
  names = _git_files()
  if names is None:
    names = _walk_files()
  rels = sorted({pathlib.PurePosixPath(n) for n in names})
  return [rel for rel in rels if _is_text(rel) and (ROOT / rel).is_file()]


def _bare_numbers(line: str) -> list[str]:
  """Tracker numbers on ``line`` not cited by a URL of the same number on that line."""
  found = []
  for match in _BARE_NUMBER.finditer(line):
    number = match.group(1)
    if re.search(rf'/(?:issues|pull)/{number}\b', line):
      continue
    found.append(match.group(0))
  return found


def find_references(rel: pathlib.PurePosixPath) -> list[str]:
  text = (ROOT / rel).read_text(encoding='utf-8', errors='replace')
  problems = []
  for lineno, line in enumerate(text.splitlines(), start=1):
    hits = [f'{what}: {m.group(0)!r}' for what, rx in FORBIDDEN.items() for m in rx.finditer(line)]
    hits += [f'bare tracker number: {hit!r}' for hit in _bare_numbers(line)]
    for hit in hits:
      problems.append(f'{rel}:{lineno}: {hit} | {line.strip()[:120]}')
  return problems


def test_scans_the_repository():
  files = {rel.as_posix() for rel in text_files()}
  assert len(files) > 30, sorted(files)
  for must in ('README.md', 'rmsprop_optax/_transforms.py', 'tests/test_no_external_refs.py'):
    assert must in files, (must, sorted(files))


def _flagged(line: str) -> bool:
  return any(rx.search(line) for rx in FORBIDDEN.values()) or bool(_bare_numbers(line))


def test_patterns_catch_what_they_should():
  # '|' is removed before matching, so this file does not flag itself.
  bad = [
    'see DES|IGN.md',
    'as in REF|ERENCES.md',
    'the St|yle.md rules',
    '../sh|ared/notes',
    'iss|ue 3',
    'optax iss|ue #49',
    'see iss|ue#5',
    'PyTorch iss|ues 23796 and 32545',
    'optax P|R 1553',
    'pull req|uest 7',
    'the iss|ue\x27s bound',
    'the se|ed documents\x27 example',
    'the se|eds\x27 setting',
    'the se|ed\x27s printed values',
    'the Se|ed\u2019s value',
    'our se|eds\x27 results',
    'trains the se|ed applications',
  ]
  for line in bad:
    assert _flagged(line.replace('|', '')), line
  good = [
    'https://github.com/google-deepmind/optax/issues/1552',
    'bf16 accumulators (optax issue 1552, https://github.com/google-deepmind/optax/issues/1552)',
    'the seed changes the initialisation; seeds 0 and 1; random seeds',
    'the mean over seeds (library)',
    'tissue 3; a proper 3-step rule; the issues are known; issue3; pr 2',
  ]
  for line in good:
    assert not _flagged(line), line


def test_no_references_to_documents_a_user_does_not_have():
  problems = [p for rel in text_files() for p in find_references(rel)]
  assert not problems, f'{len(problems)} references to outside documents:\n' + '\n'.join(problems)
