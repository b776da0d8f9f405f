"""A regular-expression matcher whose time is linear in the text, for tenant patterns.

Nova treats the server list's `name` filter as a regular expression. Python's `re`
backtracks: `(a+)+$` against "aaaa...a!" takes exponential time, so one request
could hold a conductor's DB thread (and, with the API's re-check, the API's event
loop) for seconds. This module accepts the subset of `re` syntax that needs no
backtracking and runs it as a Thompson NFA simulated as a lazily built DFA:

- syntax: literals, `.`, classes `[a-z_]` / `[^...]`, `\\d \\w \\s` and their negations,
  `\\n \\t \\r \\f \\v \\xhh`, escaped punctuation, `^ $ \\A \\Z`, groups `(...)`,
  `(?:...)`, `(?P<name>...)`, alternation `|`, quantifiers `* + ? {m} {m,} {m,n} {,n}`
  (a trailing `?` makes them lazy, which cannot change whether a search matches);
- refused (`PatternError`, which callers turn into a 400): backreferences,
  lookaround, inline flags, possessive quantifiers, `\\b`, patterns longer than
  MAX_PATTERN characters and patterns whose program exceeds MAX_PROGRAM
  instructions (counted repetition is expanded, so `(a{100}){100}` is refused).

Cost of `search(text)`: each character is one dict lookup in the DFA cache; a
transition not cached yet costs at most one pass over the program. So the work is
O(len(text) * len(program)) in the worst case, whatever the pattern. The cache is
bounded (MAX_DFA_STATES); when full it is dropped and rebuilt as needed (RE2's rule).
`search_counting` also returns the steps taken, for tests that prove the bound.
Semantics are those of `re.search` without flags for names (which hold no newline).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

MAX_PATTERN = 255  # a server name is at most 255 characters; a filter for one need not be longer
MAX_PROGRAM = 2000  # instructions once counted repetitions are expanded
MAX_REPEAT = 255
MAX_DFA_STATES = 4096


class PatternError(ValueError):
    """The pattern is malformed or outside the linear-time subset."""


# --- character sets ------------------------------------------------------------

@dataclass(frozen=True)
class CharSet:
    """Characters, ranges and class escapes (d, w, s, D, W, S), possibly negated."""
    chars: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str], ...] = ()
    classes: frozenset[str] = frozenset()
    negated: bool = False

    def __contains__(self, ch: str) -> bool:
        hit = ch in self.chars or any(lo <= ch <= hi for lo, hi in self.ranges) or \
            any(_in_class(c, ch) for c in self.classes)
        return hit != self.negated


def _in_class(name: str, ch: str) -> bool:
    if name in "dD":
        hit = ch.isdecimal()
    elif name in "wW":
        hit = ch.isalnum() or ch == "_"
    else:
        hit = ch.isspace()
    return hit if name.islower() else not hit


ANY = CharSet(chars=frozenset("\n"), negated=True)  # `.`: anything but a newline
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}


# --- parser: pattern -> tree ---------------------------------------------------

@dataclass(frozen=True)
class Chars:
    chars: CharSet


@dataclass(frozen=True)
class Cat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    branches: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    body: Node
    lo: int
    hi: int | None  # None: no upper bound


@dataclass(frozen=True)
class Anchor:
    at_end: bool  # False: ^ (start of text), True: $ (end of text)


Node = Chars | Cat | Alt | Rep | Anchor


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p, self.i = pattern, 0

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def take(self) -> str:
        ch = self.peek()
        if not ch:
            raise PatternError("unexpected end of pattern")
        self.i += 1
        return ch

    def parse(self) -> Node:
        node = self.alternation()
        if self.i < len(self.p):
            raise PatternError(f"unbalanced parenthesis at position {self.i}")
        return node

    def alternation(self) -> Node:
        branches = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concat())
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def concat(self) -> Node:
        items: list[Node] = []
        while self.peek() and self.peek() not in "|)":
            items.append(self.quantified())
        return Cat(tuple(items))

    def quantified(self) -> Node:
        start = self.i
        atom = self.atom()
        bounds = self.quantifier()
        if bounds is None:
            return atom
        if isinstance(atom, Anchor):
            raise PatternError(f"nothing to repeat at position {start}")
        if self.peek() == "?":
            self.i += 1  # lazy: the same set of matches
        elif self.peek() == "+":
            raise PatternError(f"possessive quantifiers are not supported (position {self.i})")
        if self.quantifier_ahead():
            raise PatternError(f"multiple repeat at position {self.i}")
        return Rep(atom, bounds[0], bounds[1])

    def quantifier_ahead(self) -> bool:
        saved = self.i
        try:
            return self.quantifier() is not None
        finally:
            self.i = saved

    def quantifier(self) -> tuple[int, int | None] | None:
        ch = self.peek()
        if ch and ch in "*+?":
            self.i += 1
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        if ch != "{":
            return None
        close = self.p.find("}", self.i)
        body = self.p[self.i + 1:close] if close > 0 else ""
        lo_text, comma, hi_text = body.partition(",")
        if close < 0 or not (lo_text.isdigit() or (comma and not lo_text)) or (hi_text and not hi_text.isdigit()):
            return None  # as `re`: a brace that is not a quantifier is a literal
        lo = int(lo_text) if lo_text else 0
        hi = (int(hi_text) if hi_text else None) if comma else lo
        if lo > MAX_REPEAT or (hi is not None and hi > MAX_REPEAT):
            raise PatternError(f"repeat count above {MAX_REPEAT}")
        if hi is not None and hi < lo:
            raise PatternError(f"min repeat greater than max repeat at position {self.i}")
        self.i = close + 1
        return lo, hi

    def atom(self) -> Node:
        ch = self.take()
        if ch == "(":
            return self.group()
        if ch == "[":
            return Chars(self.char_class())
        if ch == ".":
            return Chars(ANY)
        if ch in "^$":
            return Anchor(at_end=ch == "$")
        if ch == "\\":
            return self.escape()
        self.i -= 1
        if self.quantifier_ahead():
            raise PatternError(f"nothing to repeat at position {self.i}")
        self.i += 1
        return Chars(CharSet(chars=frozenset(ch)))  # a literal (a `{` that starts no quantifier too)

    def group(self) -> Node:
        if self.peek() == "?":
            self.i += 1
            kind = self.take()
            if kind == "P" and self.peek() == "<":
                close = self.p.find(">", self.i)
                name = self.p[self.i + 1:close] if close > 0 else ""
                if not name.isidentifier():
                    raise PatternError(f"bad group name at position {self.i}")
                self.i = close + 1
            elif kind != ":":
                raise PatternError("only plain, (?:...) and (?P<name>...) groups are supported "
                                   "(no lookaround, backreferences or inline flags)")
        node = self.alternation()
        if self.peek() != ")":
            raise PatternError("missing ), unterminated subpattern")
        self.i += 1
        return node

    def escape(self) -> Node:
        ch = self.take()
        if ch in "AZ":
            return Anchor(at_end=ch == "Z")
        return Chars(self.escaped_set(ch))

    def escaped_set(self, ch: str) -> CharSet:
        if ch in "dDwWsS":
            return CharSet(classes=frozenset(ch))
        return CharSet(chars=frozenset(self.escaped_char(ch)))

    def escaped_char(self, ch: str) -> str:
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch]
        if ch == "x":
            digits = self.p[self.i:self.i + 2]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise PatternError(f"incomplete escape \\x{digits}")
            self.i += 2
            return chr(int(digits, 16))
        if ch.isalnum():
            raise PatternError(f"unsupported escape \\{ch} (no backreferences, \\b or \\B)")
        return ch

    def char_class(self) -> CharSet:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        classes: set[str] = set()
        first = True
        while True:
            ch = self.take()
            if ch == "]" and not first:
                break
            first = False
            if ch == "\\":
                esc = self.take()
                if esc in "dDwWsS":
                    classes.add(esc)
                    continue
                ch = self.escaped_char(esc)
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.take()
                if hi == "\\":
                    esc = self.take()
                    if esc in "dDwWsS":
                        raise PatternError(f"bad character range {ch}-\\{esc}")
                    hi = self.escaped_char(esc)
                if hi < ch:
                    raise PatternError(f"bad character range {ch}-{hi}")
                ranges.append((ch, hi))
            else:
                chars.add(ch)
        return CharSet(frozenset(chars), tuple(ranges), frozenset(classes), negated)


# --- compiler: tree -> program -------------------------------------------------

CHAR, SPLIT, JMP, BOL, EOL, MATCH = range(6)


@dataclass(frozen=True)
class Instr:
    op: int
    x: int = 0  # JMP target; SPLIT's first choice
    y: int = 0  # SPLIT's second choice
    chars: CharSet | None = None  # CHAR only


class _Compiler:
    def __init__(self) -> None:
        self.prog: list[Instr] = []

    def emit(self, instr: Instr) -> int:
        if len(self.prog) >= MAX_PROGRAM:
            raise PatternError(f"pattern too complex (more than {MAX_PROGRAM} instructions)")
        self.prog.append(instr)
        return len(self.prog) - 1

    def node(self, n: Node) -> None:
        if isinstance(n, Chars):
            self.emit(Instr(CHAR, chars=n.chars))
        elif isinstance(n, Anchor):
            self.emit(Instr(EOL if n.at_end else BOL))
        elif isinstance(n, Cat):
            for item in n.items:
                self.node(item)
        elif isinstance(n, Alt):
            self.alternatives(n.branches)
        else:
            self.repeat(n)

    def alternatives(self, branches: tuple[Node, ...]) -> None:
        jumps = []
        for branch in branches[:-1]:
            split = self.emit(Instr(SPLIT))
            self.node(branch)
            jumps.append(self.emit(Instr(JMP)))
            self.prog[split] = Instr(SPLIT, split + 1, len(self.prog))
        self.node(branches[-1])
        for j in jumps:
            self.prog[j] = Instr(JMP, len(self.prog))

    def repeat(self, rep: Rep) -> None:
        for _ in range(rep.lo):
            self.node(rep.body)
        if rep.hi is None:  # star: L1: split L2, L3; L2: body; jmp L1; L3:
            split = self.emit(Instr(SPLIT))
            self.node(rep.body)
            self.emit(Instr(JMP, split))
            self.prog[split] = Instr(SPLIT, split + 1, len(self.prog))
            return
        splits = []
        for _ in range(rep.hi - rep.lo):  # optional copies, each may skip to the end
            splits.append(self.emit(Instr(SPLIT)))
            self.node(rep.body)
        for s in splits:
            self.prog[s] = Instr(SPLIT, s + 1, len(self.prog))


# --- the matcher ---------------------------------------------------------------

State = frozenset[int]


class LinearRegex:
    """A compiled pattern; `search` as `re.search(pattern, text) is not None`."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"pattern longer than {MAX_PATTERN} characters")
        tree = _Parser(pattern).parse()
        compiler = _Compiler()
        compiler.node(tree)
        self.match_pc = compiler.emit(Instr(MATCH))
        self.pattern = pattern
        self.prog = compiler.prog
        self._next: dict[State, dict[str, State]] = {}
        self._end: dict[State, bool] = {}
        self._first = self._closure([0], at_start=True, at_end=False)

    def _closure(self, pcs: list[int], at_start: bool, at_end: bool) -> tuple[State, int]:
        """The instructions reachable without consuming a character, and how many were visited."""
        seen: set[int] = set()
        out: set[int] = set()
        stack = list(pcs)
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            ins = self.prog[pc]
            if ins.op == JMP:
                stack.append(ins.x)
            elif ins.op == SPLIT:
                stack += (ins.y, ins.x)
            elif ins.op == BOL:
                if at_start:
                    stack.append(pc + 1)
            elif ins.op == EOL and at_end:
                stack.append(pc + 1)
            else:
                out.add(pc)  # CHAR, MATCH, or an EOL waiting for the end
        return frozenset(out), len(seen)

    def _step(self, state: State, ch: str) -> tuple[State, int]:
        cached = self._next.get(state)
        nxt = cached.get(ch) if cached is not None else None
        if nxt is not None:
            return nxt, 1
        moved = [pc + 1 for pc in state if (cs := self.prog[pc].chars) is not None and ch in cs]
        nxt, steps = self._closure(moved + [0], at_start=False, at_end=False)  # 0: a search may start anywhere
        if len(self._next) >= MAX_DFA_STATES:
            self._next.clear()
            self._end.clear()
        self._next.setdefault(state, {})[ch] = nxt
        return nxt, steps + len(state)

    def _accepts_at_end(self, state: State, at_start: bool) -> tuple[bool, int]:
        known = None if at_start else self._end.get(state)
        if known is not None:
            return known, 1
        waiting = [pc for pc in state if self.prog[pc].op == EOL]
        final, steps = self._closure(waiting, at_start=at_start, at_end=True)
        ok = self.match_pc in final
        if not at_start:
            self._end[state] = ok
        return ok, steps + 1

    def search_counting(self, text: str) -> tuple[bool, int]:
        """(whether the pattern occurs in text, the instructions and cache lookups it took)."""
        match = self.match_pc
        state, steps = self._first
        for ch in text:
            if match in state:
                return True, steps
            state, cost = self._step(state, ch)
            steps += cost
        if match in state:
            return True, steps
        ok, cost = self._accepts_at_end(state, at_start=not text)
        return ok, steps + cost

    def search(self, text: str) -> bool:
        return self.search_counting(text)[0]


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> LinearRegex:
    """A compiled pattern, cached (a listing's pattern is used for every row of every page)."""
    return LinearRegex(pattern)


def search(pattern: str | None, text: str | None) -> bool:
    """SQL function body: does `pattern` occur in `text` (NULL text never matches)."""
    if pattern is None or text is None:
        return False
    return compile_pattern(pattern).search(text)
