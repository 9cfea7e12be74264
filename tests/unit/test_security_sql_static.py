"""No SQL in services/ or shared/ is built from request or event values.

Every SQL-looking string that is assembled (an f-string, `+`, `%` or `.format`) is found in the
source, and every value spliced into it must be provably constant: a literal; a module constant
(also through an import); a local bound only to such values (including loop variables over
constant tuples and items appended to a list); a choice between literals (`" FOR UPDATE" if lock
else ""`); a lookup in a constant table; `int(...)`/`len(...)`; a join of such values; a call to a
function of the module whose every `return` is such a value; a parameter guarded by
`assert name in (<literals>)`, or one that every call in its module passes such a value.
Values (customer names, ids, search terms) go in as `$n` parameters, which is what this enforces.

What the analysis cannot prove is listed in REVIEWED with the reason it is safe, read from the
code; an entry that no longer matches anything fails too, so the list stays true.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("services", "shared")
SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|ALTER|DROP|TRUNCATE|WHERE|VALUES|LIMIT|"
                 r"OFFSET|FILTER|RETURNING|ON CONFLICT|ORDER BY|GROUP BY|SET LOCAL|search_path)\b")
SAFE_CALLS = {"int", "len", "str", "range", "enumerate", "zip", "dict", "tuple", "list", "sorted", "set",
              "reversed", "min", "max"}

BULK = ("the names of a shared.bulk.Table, declared in code and checked against ^[a-z_][a-z0-9_]*$ when the "
        "Table is made, and column lists checked against the Table's declared columns")
BULK_CLAUSE = "a clause text every call site passes as a string literal (test_bulk_clauses_are_literals_at_every_call_site)"

# The parts of a shared.api.Keyset that may be spliced into SQL (see Checker._made_by_keyset).
KEYSET_PARTS = ("where", "order_by")

# (file, function, spliced expression) -> why it is safe.
REVIEWED = {
    ("shared/bulk.py", "_insert_sql", "table.name"): BULK,
    ("shared/bulk.py", "_insert_sql", "', '.join(names)"): BULK,
    ("shared/bulk.py", "_insert_sql", "table._select(names)"): BULK,
    ("shared/bulk.py", "_insert_sql", "table._source(names)"): BULK,
    ("shared/bulk.py", "_update_sql", "table.name"): BULK,
    ("shared/bulk.py", "_update_sql", "assignments"): BULK,
    ("shared/bulk.py", "_update_sql", "table._source(names)"): BULK,
    ("shared/bulk.py", "_update_sql", "match"): BULK,
    ("shared/bulk.py", "_insert_sql", "on_conflict"): BULK_CLAUSE,
    ("shared/bulk.py", "_insert_sql", "returning"): BULK_CLAUSE,
    ("shared/bulk.py", "_update_sql", "returning"): BULK_CLAUSE,
    ("shared/bulk.py", "upsert", "f'DO UPDATE SET {assignments}'"): BULK,
    ("shared/bulk.py", "upsert", "f' WHERE {where}' if where else ''"): BULK_CLAUSE,
    ("shared/bulk.py", "upsert", "assignments"): BULK,
    ("shared/bulk.py", "upsert", "where"): BULK_CLAUSE,
    ("shared/db.py", "ensure_database", "name"):
        "the database name parsed from the AFTERSALES_DATABASE_URL setting (operator configuration, never request "
        "or event data), double-quoted as an identifier; CREATE DATABASE takes no parameters",
    ("shared/migrations.py", "migrate", "schema"):
        "a service's own name, refused unless it matches ^[a-z][a-z0-9_]*$ at the top of migrate(); "
        "CREATE SCHEMA / SET search_path take no parameters",
}


@dataclass
class Module:
    path: Path
    tree: ast.Module
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    def scopes(self, node: ast.AST) -> list[ast.AST]:
        """The functions enclosing `node`, innermost first, then the module."""
        chain: list[ast.AST] = []
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                chain.append(node)
        return [*chain, self.tree]


_modules: dict[Path, Module] = {}


def module(path: Path) -> Module:
    if path not in _modules:
        _modules[path] = Module(path, ast.parse(path.read_text(), str(path)))
    return _modules[path]


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a scope, not those of the functions nested in it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


class Analysis:
    def __init__(self, mod: Module) -> None:
        self.mod = mod
        self._busy: set[tuple[int, str]] = set()

    # -- is this expression built only from constants? ----------------------------------
    def safe(self, expr: ast.AST, at: ast.AST, bound: dict[str, ast.AST] | None = None) -> bool:
        bound = bound or {}
        if isinstance(expr, ast.Constant):
            return True
        if isinstance(expr, ast.JoinedStr):
            return all(self.safe(v.value, at, bound) for v in expr.values if isinstance(v, ast.FormattedValue))
        if isinstance(expr, ast.FormattedValue):
            return self.safe(expr.value, at, bound)
        if isinstance(expr, ast.IfExp):
            return self.safe(expr.body, at, bound) and self.safe(expr.orelse, at, bound)
        if isinstance(expr, ast.BoolOp):
            return all(self.safe(v, at, bound) for v in expr.values)
        if isinstance(expr, ast.BinOp):
            return self.safe(expr.left, at, bound) and self.safe(expr.right, at, bound)
        if isinstance(expr, ast.UnaryOp):
            return self.safe(expr.operand, at, bound)
        if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
            return all(self.safe(e, at, bound) for e in expr.elts)
        if isinstance(expr, ast.Starred):
            return self.safe(expr.value, at, bound)
        if isinstance(expr, ast.Dict):
            return all(self.safe(v, at, bound) for v in [*expr.keys, *expr.values] if v is not None)
        if isinstance(expr, ast.Subscript):
            return self.safe(expr.value, at, bound)  # an element of a constant table
        if isinstance(expr, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
            inner = dict(bound)
            for generator in expr.generators:
                if not self.safe(generator.iter, at, inner):
                    return False
                for name in ast.walk(generator.target):
                    if isinstance(name, ast.Name):
                        inner[name.id] = ast.Constant("")
            return self.safe(expr.elt, at, inner)
        if isinstance(expr, ast.Call):
            return self._safe_call(expr, at, bound)
        if isinstance(expr, ast.Attribute) and expr.attr in KEYSET_PARTS and isinstance(expr.value, ast.Name):
            return self._made_by_keyset(expr.value.id, at)
        if isinstance(expr, ast.Name):
            if expr.id in bound:
                return True
            return self.name_is_safe(expr.id, at)
        return False

    def _made_by_keyset(self, name: str, at: ast.AST) -> bool:
        """`name` is bound, in the enclosing function, only to `keyset(...)` (shared/api.py): its
        `where` and `order_by` are built from SortKey columns declared in code (checked against an
        identifier pattern when declared) and `$n` placeholders; the cursor's values are parameters."""
        scope = next((s for s in self.mod.scopes(at) if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)), None)
        if scope is None:
            return False
        values = [node.value for node in _own_nodes(scope) if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]
        return bool(values) and all(isinstance(v, ast.Call) and isinstance(v.func, ast.Name | ast.Attribute)
                                    and (v.func.id if isinstance(v.func, ast.Name) else v.func.attr) == "keyset"
                                    for v in values)

    def _safe_call(self, call: ast.Call, at: ast.AST, bound: dict[str, ast.AST]) -> bool:
        arguments = [*call.args, *(k.value for k in call.keywords)]
        func = call.func
        if isinstance(func, ast.Name) and func.id in ("int", "len"):
            return True  # a number cannot carry SQL
        if isinstance(func, ast.Name) and func.id in SAFE_CALLS:
            return all(self.safe(a, at, bound) for a in arguments)
        if isinstance(func, ast.Attribute) and not isinstance(func.value, ast.Name | ast.Constant | ast.JoinedStr):
            return False
        if isinstance(func, ast.Attribute):  # a string method on a constant: ", ".join(...), "x".upper()
            return self.safe(func.value, at, bound) and all(self.safe(a, at, bound) for a in arguments)
        if isinstance(func, ast.Name):
            found = self.function(func.id, at)
            return found is not None and self.returns_safe(found)
        return False

    def function(self, name: str, at: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for scope in self.mod.scopes(at):
            for node in _own_nodes(scope):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                    return node
        return None

    def returns_safe(self, fn: ast.AST, index: int | None = None) -> bool:
        returns = [n for n in _own_nodes(fn) if isinstance(n, ast.Return) and n.value is not None]
        for r in returns:
            value = r.value
            if index is not None and isinstance(value, ast.Tuple):
                value = value.elts[index]
            if not self.safe(value, r):
                return False
        return bool(returns)

    # -- names ---------------------------------------------------------------------------
    def name_is_safe(self, name: str, at: ast.AST) -> bool:
        for scope in self.mod.scopes(at):
            verdict = self._in_scope(name, scope)
            if verdict is not None:
                return verdict
        return False

    def _in_scope(self, name: str, scope: ast.AST) -> bool | None:
        """None: not bound in this scope; else whether every binding is safe."""
        key = (id(scope), name)
        if key in self._busy:
            return True  # a cycle (x = x + …): decided by the other bindings
        self._busy.add(key)
        try:
            return self._bindings(name, scope)
        finally:
            self._busy.discard(key)

    def _bindings(self, name: str, scope: ast.AST) -> bool | None:
        found = False
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a.arg for a in [*scope.args.posonlyargs, *scope.args.args, *scope.args.kwonlyargs]]
            if name in params:
                found = True
                if not (self._guarded(name, scope) or self._callers_pass_safe(name, scope)):
                    return False
        for node in _own_nodes(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    verdict = self._assigned(name, target, node.value, node)
                    if verdict is not None:
                        found = True
                        if not verdict:
                            return False
            elif isinstance(node, ast.For | ast.comprehension) and _binds(node.target, name):
                found = True
                if not self.safe(node.iter, node):
                    return False
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == name and \
                    node.func.attr in ("append", "extend", "insert", "add", "update"):
                if not all(self.safe(a, node) for a in node.args):
                    return False
            elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
                return self._imported(node, name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return False  # a function object is not a string
        return found if found else None

    def _assigned(self, name: str, target: ast.AST, value: ast.AST | None, at: ast.AST) -> bool | None:
        if isinstance(target, ast.Name):
            if target.id != name:
                return None
            return value is not None and self.safe(value, at)
        if isinstance(target, ast.Tuple | ast.List):
            for i, element in enumerate(target.elts):
                if _binds(element, name):
                    if isinstance(value, ast.IfExp):
                        return bool(self._assigned(name, target, value.body, at)) and \
                            bool(self._assigned(name, target, value.orelse, at))
                    if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
                        return self._assigned(name, element, value.elts[i], at)
                    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
                        fn = self.function(value.func.id, at)
                        return fn is not None and self.returns_safe(fn, i)
                    return False
        return None

    def _guarded(self, name: str, fn: ast.AST) -> bool:
        """`assert name in ("a", "b")` in the function."""
        for node in _own_nodes(fn):
            if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and \
                    isinstance(node.test.left, ast.Name) and node.test.left.id == name and \
                    isinstance(node.test.ops[0], ast.In) and self.safe(node.test.comparators[0], node):
                return True
        return False

    def _callers_pass_safe(self, name: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        """Every call of `fn` in its module passes a constant for `name` (and there is one)."""
        params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
        calls = [n for n in ast.walk(self.mod.tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id == fn.name]
        if not calls or not fn.name.startswith("_"):
            return False  # callable from elsewhere: its callers cannot all be seen
        for call in calls:
            passed = {params[i]: a for i, a in enumerate(call.args) if i < len(params)}
            passed.update({k.arg: k.value for k in call.keywords if k.arg})
            if name in passed and not self.safe(passed[name], call):
                return False
        return True

    def _imported(self, node: ast.ImportFrom, name: str) -> bool:
        original = next(a.name for a in node.names if (a.asname or a.name) == name)
        source = ROOT / Path(*(node.module or "").split(".")).with_suffix(".py")
        if not source.exists():
            return False
        other = Analysis(module(source))
        return bool(other._in_scope(original, other.mod.tree))


def _binds(target: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target))


def _is_sql(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(SQL.search(node.value))
    if isinstance(node, ast.JoinedStr):
        return bool(SQL.search("".join(v.value for v in node.values if isinstance(v, ast.Constant))))
    return False


@dataclass(frozen=True)
class Splice:
    file: str
    line: int
    function: str
    expression: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.file, self.function, self.expression


def unsafe_splices(mod: Module) -> Iterator[Splice]:
    """Values spliced into SQL that are not provably constant."""
    analysis = Analysis(mod)
    for node in ast.walk(mod.tree):
        spliced: list[ast.AST] = []
        if isinstance(node, ast.JoinedStr) and _is_sql(node):
            spliced = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and (_is_sql(node.left) or _is_sql(node.right)):
            spliced = [node.left, node.right]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_sql(node.left):
            spliced = [node.right]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                and _is_sql(node.func.value):
            spliced = [*node.args, *(k.value for k in node.keywords)]
        for value in spliced:
            if not analysis.safe(value, node):
                scope = mod.scopes(node)[0]
                yield Splice(mod.name, node.lineno, getattr(scope, "name", "<module>"), ast.unparse(value))


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


def test_no_sql_is_built_from_values_that_are_not_constants() -> None:
    found = [s for path in _sources() for s in unsafe_splices(module(path))]
    unexplained = [s for s in found if s.key not in REVIEWED]
    assert not unexplained, "SQL built from values that may come from a request or an event (use $n parameters):\n" + \
        "\n".join(f"{s.file}:{s.line} in {s.function}(): {{{s.expression}}}" for s in unexplained)
    stale = set(REVIEWED) - {s.key for s in found}
    assert not stale, f"reviewed splices that are no longer in the code (remove them): {stale}"


def test_the_scan_sees_the_assembled_sql_of_every_store() -> None:
    """The scan is not vacuous: it finds the stores' assembled statements and proves them constant."""
    assembled = 0
    for path in _sources():
        for node in ast.walk(module(path).tree):
            if isinstance(node, ast.JoinedStr) and _is_sql(node) and any(
                    isinstance(v, ast.FormattedValue) for v in node.values):
                assembled += 1
    assert assembled >= 30, assembled
    stores = {p.parent.name for p in _sources() if p.name == "store.py"}
    assert stores == {"intake", "followup", "complaints", "quality", "notifier", "console"}, stores


def test_bulk_clauses_are_literals_at_every_call_site() -> None:
    """The clause texts a Table statement splices (on_conflict, where, returning) are written in
    the code at every call, never computed from data."""
    calls = 0
    for path in _sources():
        if path == ROOT / "shared" / "bulk.py":
            continue  # the Table's own methods pass their callers' clauses on
        for node in ast.walk(module(path).tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("insert", "upsert", "update")):
                continue
            for keyword in node.keywords:
                if keyword.arg in ("on_conflict", "where", "returning"):
                    calls += 1
                    literal = isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str)
                    chosen = (isinstance(keyword.value, ast.IfExp) and all(
                        isinstance(v, ast.Constant) or isinstance(v, ast.Name) and v.id.isupper()
                        for v in (keyword.value.body, keyword.value.orelse)))
                    named = isinstance(keyword.value, ast.Name) and keyword.value.id.isupper()
                    assert literal or chosen or named, (
                        f"{path.relative_to(ROOT)}:{node.lineno}: {keyword.arg}= must be a string literal")
    assert calls >= 26, calls  # the clauses the Table call sites of services/ and shared/ pass today: never vacuous


def _scan(source: str) -> list[str]:
    path = ROOT / "services" / "_probe_for_the_scan.py"
    mod = Module(path, ast.parse(source))
    return [s.expression for s in unsafe_splices(mod)]


def test_the_scan_flags_values_spliced_into_sql_and_passes_constants() -> None:
    flagged = _scan('''
async def by_name(conn, name):
    return await conn.fetch(f"SELECT * FROM customers WHERE name = '{name}'")

async def by_region(conn, request):
    region = request.query_params["region"]
    return await conn.fetch("SELECT * FROM customers WHERE region = '" + region + "'")

async def ordered(conn, column):
    return await conn.fetch("SELECT * FROM customers ORDER BY %s" % column)

async def limited(conn, event):
    return await conn.fetch("SELECT * FROM visits LIMIT {}".format(event.data.limit))

async def searched(conn, term):
    where = ["true"]
    where.append(f"name LIKE '{term}%'")
    return await conn.fetch(f"SELECT * FROM customers WHERE {' AND '.join(where)}")
''')
    assert sorted(flagged) == sorted(["name", "region", "column", "event.data.limit", "' AND '.join(where)"]), flagged
    passed = _scan('''
_COLUMNS = ("a", "b")
TABLES = ("visits", "vehicles")

def _filter(first: int, kind):
    alias, column = ("r", "cell_batch") if kind else ("p", "batch")
    return f"{alias}.{column} = ${first}", [kind]

async def fine(conn, lock: bool, limit, state, column):
    assert column in ("overdue_at", "escalated_at")
    stamp = {"acknowledged": "acknowledged", "closed": "closed"}[state]
    clause, args = _filter(3, state)
    for table in TABLES:
        await conn.execute(f"UPDATE {table} SET {column} = $1, {stamp}_at = now() WHERE {clause}", *args)
    return await conn.fetch(
        f"SELECT {', '.join(_COLUMNS)} FROM t{' FOR UPDATE' if lock else ''} LIMIT {int(limit)}")
''')
    assert passed == [], passed
