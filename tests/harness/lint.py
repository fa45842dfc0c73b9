#!/usr/bin/env python3
"""tests/harness/lint.py: refuse the shell-test patterns that let a test pass without proving
anything (the ctest entry test_lint runs it on every tests/**/*.sh).

  lint.py [--self-test] [FILE|DIR ...]     (default: the tests/ directory beside this file)

It reports, as FILE:LINE: MESSAGE, and exits 1 if there is any:
  check-chain   `check ... && X` / `check ... || X`: check always returns 0, so X's result is
                never checked (the `&&` half is dropped, the `||` half never runs).  Quoted
                text (`check D bash -c "a && b"`) is fine: the whole of it is checked.
  dropped-wait  a `wait_for` whose result nobody looks at: not an argument of check, not in an
                if/while/until condition or after `!`, not followed by `||` or `&&`, not the
                last command of a function (its return value) nor `return`ed.  Also inside
                "$(...)": `$(wait_for X; cmd)` drops the wait.
  silent-skip   `echo "skip ..."` (or printf) that neither records the skip (harness_skip /
                skip, so the test ends 77) nor exits 77 on this or the next line: a part that
                did not run would count as passed.
A line may opt out with a trailing `# lint: ok (REASON)`; the reason is required.

It is a token-level check, not a shell parser: heredoc bodies are skipped, a line continued
with a backslash or by an open quote is joined first.
"""
import os
import re
import shlex
import sys

CHECKS = {"check", "check_eq", "check_contains"}
SEPS = {";", "&&", "||", "|", "&", "(", ")", ";;", "\n", "{", "}", "|&"}
# words after which the next word starts a command
CMD_START_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "!", "time"}
COND_WORDS = {"if", "elif", "while", "until", "!", "return"}
OPT_OUT = re.compile(r"#\s*lint:\s*ok\s*\(\S[^)]*\)")


def logical_lines(text):
    """Yield (lineno, text) of logical lines: heredoc bodies skipped, continuations joined."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start = i
        cur = lines[i]
        i += 1
        while True:
            if cur.endswith("\\") and i < len(lines):
                cur = cur[:-1] + " " + lines[i]
                i += 1
                continue
            try:
                lex = shlex.shlex(cur, posix=True, punctuation_chars=True)
                lex.whitespace_split = True
                list(lex)
                break
            except ValueError:
                if i < len(lines) and i - start < 60:
                    cur = cur + "\n" + lines[i]
                    i += 1
                    continue
                break
        yield start + 1, cur
        m = re.search(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", cur)
        if m and "<<<" not in cur[max(0, m.start() - 1):m.start() + 3]:
            term = m.group(2)
            while i < len(lines) and lines[i].strip() != term:
                i += 1
            i += 1


def tokens(line):
    # non-POSIX keeps the quotes in the words; it refuses a quote inside a word
    # ("a/$(f "$x")/b"), which POSIX mode reads (quotes dropped, still one word)
    for posix in (False, True):
        lex = shlex.shlex(line, posix=posix, punctuation_chars=";&|()<>")
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            return list(lex)
        except ValueError:
            continue
    return None


def subst_bodies(tok):
    """The bodies of $(...) found in a token (quoted or not), for a recursive look."""
    out = []
    i = tok.find("$(")
    while i >= 0:
        depth, j = 0, i + 1
        while j < len(tok):
            if tok[j] == "(":
                depth += 1
            elif tok[j] == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out.append(tok[i + 2:j])
        i = tok.find("$(", j)
    return out


def waited_cmd(w):
    """The command a wait_for runs (its words without the --timeout options)."""
    w = list(w[1:])
    if w[:1] == ["--timeout"]:
        w = w[2:]
    elif w and w[0].isdigit():
        w = w[1:]  # a local wait_for TIMEOUT CMD... (cli_test.sh, packaging/lib.sh)
    if len(w) >= 2 and w[-2] == "--timeout":
        w = w[:-2]
    while w and re.match(r"^[0-9]*>", w[-1]) or w and w[-1] in (">", ">&", "/dev/null"):
        w = w[:-1]
    return w


def rechecked(w, rest, next_stmt):
    """`wait_for X` whose next statement is `check DESC X` (the claim is checked right after)."""
    cmd = waited_cmd(w)
    if not cmd:
        return False
    for _, words, _ in rest:
        if words:
            stmt = words
            break
    else:
        stmt = next_stmt or []
    if len(stmt) >= 3 and stmt[0] in ("check", "check_show"):
        return stmt[2:2 + len(cmd)] == cmd
    return False


def lint_tokens(toks, next_line_closes, report, inner=False, next_stmt=None):
    # split into commands: (prev_sep, words, next_sep)
    cmds = []
    prev = "\n"
    words = []
    for t in toks:
        if t in SEPS:
            cmds.append((prev, words, t))
            prev, words = t, []
        else:
            words.append(t)
    cmds.append((prev, words, "\n"))
    for k, (prev, words, nxt) in enumerate(cmds):
        # skip leading keywords to the command word
        w = list(words)
        cond = prev in ("&&", "||")
        while w and (w[0] in CMD_START_WORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w[0]) and len(w) > 1):
            if w[0] in COND_WORDS:
                cond = True
            w = w[1:]
        if not w:
            continue
        cmd = w[0]
        for t in words:
            if "$(" in t:
                for body in subst_bodies(t):
                    bt = tokens(body)
                    if bt is not None:
                        lint_tokens(bt, False, report, inner=True)
        if cmd in CHECKS and nxt in ("&&", "||"):
            report("check-chain", "`%s ... %s ...`: check returns 0 whatever happened, so the "
                   "other half is never checked; check each claim on its own" % (cmd, nxt))
        if cmd == "wait_for":
            if (len(w) == 1 and nxt == "(") or (len(w) >= 2 and w[1] in ("()", "(")):
                continue  # the definition of a function named wait_for
            if cond or nxt in ("&&", "||"):
                continue
            if not inner and rechecked(w, cmds[k + 1:], next_stmt):
                continue
            # last command of a function body / { } group: its result is the return value
            rest = [c for c in cmds[k + 1:] if c[1] or c[2] in ("}", ")")]
            following = cmds[k + 1] if k + 1 < len(cmds) else None
            if not inner and (nxt == "}" or (nxt in (";", "\n") and following is not None and
                                             not following[1] and following[2] == "}")):
                continue
            if not inner and nxt in ("\n", ";") and not any(c[1] for c in cmds[k + 1:]) and next_line_closes:
                continue
            del rest
            report("dropped-wait", "the result of `wait_for` is dropped: check it, test it "
                   "(`|| h_die ...`), or make it a condition")


SILENT_SKIP = re.compile(r"""\b(echo|printf)\s+(-\S+\s+)*["']?(#\s*)?skip(ped)?\b""", re.I)


def lint_skip(line, nxt_line, report):
    if SILENT_SKIP.search(line) and not re.search(r"\b(exit|return)\s+77\b|SKIPPED\+?=",
                                                  line + "\n" + nxt_line):
        report("silent-skip", "a skip printed but not recorded: call harness_skip (or the "
               "packaging tests' skip) so the test ends 77, or exit 77")


def lint_file(path, out):
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError as e:
        out.append("%s:0: cannot read: %s" % (path, e))
        return
    ll = list(logical_lines(text))
    for idx, (lineno, line) in enumerate(ll):
        if OPT_OUT.search(line):
            continue
        toks = tokens(line)
        if toks is None:
            continue
        nxt_line = ""
        for _, l2 in ll[idx + 1:]:
            if l2.strip() and not l2.strip().startswith("#"):
                nxt_line = l2.strip()
                break
        closes = nxt_line.startswith("}")

        nt = tokens(nxt_line) if nxt_line else None

        def report(kind, msg, lineno=lineno):
            out.append("%s:%d: %s: %s" % (path, lineno, kind, msg))
        lint_tokens(toks, closes, report, next_stmt=nt)
        lint_skip(line, nxt_line, report)


def files_of(args):
    for a in args:
        if os.path.isdir(a):
            for root, dirs, files in os.walk(a):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith(".sh"):
                        yield os.path.join(root, f)
        else:
            yield a


SELF_TESTS = [
    # (text, expected kinds)
    ('check "x" wait_for 5 test -f a && wait_for 5 grep -q b a\n', ["check-chain"]),
    ('check "x" bash -c "a && b"\n', []),
    ('check_eq "x" 1 "$(f)" || true\n', ["check-chain"]),
    ('wait_for --timeout 5 foo\n', ["dropped-wait"]),
    ('wait_for --timeout 5 foo || h_die "no foo"\n', []),
    ('if wait_for 5 foo; then x; fi\n', []),
    ('check "x" wait_for 5 foo\n', []),
    ('! wait_for 5 foo\n', []),
    ('f() { wait_for 5 foo; }\n', []),
    ('f() {\n    x=1\n    wait_for 5 foo\n}\n', []),
    ('check_eq "x" v "$(wait_for 10 a >/dev/null; b)"\n', ["dropped-wait"]),
    ('x=$(wait_for 10 a && b)\n', []),
    ('cat <<EOF\nwait_for 5 foo\ncheck "x" a && b\nEOF\n', []),
    ('wait_for 5 foo  # lint: ok (the next check looks at the same state)\n', []),
    ('wait_for 5 foo  # lint: ok\n', ["dropped-wait"]),
    ('check "x" test -f a &&\n    check "y" test -f b\n', ["check-chain"]),
    ('echo "wait_for 5 foo; check a && b"\n', []),
    ('wait_for() {\n    x\n}\n', []),
    ('wait_for 5 store_has r1 "^register $N/$(s12 "$id3")/80 "\nt0=$(now_ns)\n', ["dropped-wait"]),
    ('wait_for --timeout 5 snap_has a "x y"\ncheck "d" snap_has a "x y"\n', []),
    ('wait_for --timeout 5 snap_has a "x y"\ncheck "d" snap_has a "x z"\n', ["dropped-wait"]),
    ('echo "skip - no tool"\n', ["silent-skip"]),
    ("[ -x t ] || echo 'SKIPPED: no tool'\n", ["silent-skip"]),
    ('echo "skip - no tool"\nexit 77\n', []),
    ('harness_skip "no tool"\n', []),
    ('skip() { echo "SKIPPED: $*"; SKIPPED="$SKIPPED $*"; }\n', []),
    ('echo "# not applicable here: /run/x exists"\n', []),
]


def self_test():
    bad = 0
    for text, want in SELF_TESTS:
        out = []
        ll = list(logical_lines(text))
        for idx, (lineno, line) in enumerate(ll):
            if OPT_OUT.search(line):
                continue
            toks = tokens(line)
            if toks is None:
                continue
            nxt = next((l.strip() for _, l in ll[idx + 1:] if l.strip()), "")

            def report(kind, msg):
                out.append(kind)
            lint_tokens(toks, nxt.startswith("}"), report, next_stmt=tokens(nxt) if nxt else None)
            lint_skip(line, nxt, report)
        if out != want:
            bad += 1
            print("self-test: %r: got %r, want %r" % (text, out, want))
    print("lint self-test: %d of %d cases right" % (len(SELF_TESTS) - bad, len(SELF_TESTS)))
    return bad == 0


def main(argv):
    args = argv[1:]
    ok = True
    if args and args[0] == "--self-test":
        ok = self_test()
        args = args[1:]
        if not args:
            args = [os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))]
    if not args:
        args = [os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))]
    out = []
    n = 0
    for f in files_of(args):
        n += 1
        lint_file(f, out)
    for line in out:
        print(line)
    print("lint: %d files, %d problems" % (n, len(out)))
    return 0 if ok and not out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
