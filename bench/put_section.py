#!/usr/bin/env python3
"""Put a labelled Markdown section into a results file of bench/.

usage: put_section.py FILE LABEL SECTION_FILE [TITLE]
  The section (whose first line is "## LABEL") replaces an earlier section
  of that label, or is appended. A missing or empty FILE starts with TITLE
  (Markdown, a heading and a line on what writes it). Used by bench/wal.sh
  and bench/peer.sh.
"""
import re
import sys


def main():
    path, label, section = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
    title = sys.argv[4] if len(sys.argv) > 4 else ""
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = ""
    if not text.strip():
        text = title.rstrip("\n") + "\n\n"
    text = re.sub(r"## %s\n.*?(?=\n## |\Z)" % re.escape(label), "", text, flags=re.S)
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + section)


if __name__ == "__main__":
    main()
