"""Chat templates (GGUF ``tokenizer.chat_template``): judge the parsed Jinja AST, never render it.

A chat template is a Jinja program. llama.cpp and transformers render it in a sandbox
(``ImmutableSandboxedEnvironment``), but older or careless loaders render it with a plain
``jinja2.Environment``, where ``''.__class__.__mro__[1].__subclasses__()`` runs anything.
A regex cannot see through ``|attr("\\x5f\\x5fglobals\\x5f\\x5f")`` or ``"_"*2 ~ "class"``, so the
template is parsed (``Environment.parse``: no code runs) and checked against what a strict
sandbox allows, and stricter: attribute and item names must be constants that do not start
with ``_``; computed names only where they cannot be built by the template; methods only from
a small allowlist of str/dict methods real templates call; filters, tests and globals only
from what real templates use; no ``self``, ``attr``, imports or includes.

Categories: a name that reaches a dunder (directly, or after folding a string built from
constants) or a known frame/code attribute is ``dangerous``; anything else outside the
allowlist is ``unknown``: it may be harmless, but its effect depends on what the renderer
exposes, which a scan cannot know.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelgate.scan.findings import Category

MAX_TEMPLATE_CHARS = 1 << 20


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FILTERS = _words(
    """
    abs capitalize center count d default dictsort e escape first float indent int items join last length list
    lower map max min reject rejectattr replace reverse round safe select selectattr sort string sum title tojson
    trim truncate unique upper wordcount wordwrap batch slice
    """
)
_TESTS = _words(
    """
    boolean callable defined divisibleby eq equalto escaped even false filter float ge greaterthan gt in integer
    iterable le lessthan lower lt mapping ne none number odd sameas sequence string test true undefined upper
    """
)
_METHODS = _words(
    """
    strip lstrip rstrip split rsplit splitlines startswith endswith lower upper title capitalize replace find
    rfind count isdigit isalpha isalnum isspace islower isupper get items keys values append
    """
)
# ``append`` only mutates a list the template built (gpt-oss needs it); it reaches nothing else.
_GLOBALS = frozenset({"range", "namespace", "raise_exception", "strftime_now", "dict", "loop", "true", "false"})
_FORBIDDEN_NAMES = frozenset({"self", "cycler", "joiner", "lipsum", "request", "config", "g", "session", "url_for"})
# Attributes without underscores that still lead to frames, code or globals.
_DANGEROUS_ATTRS = _words(
    """
    gi_frame gi_code gi_yieldfrom cr_frame cr_code ag_frame ag_code f_globals f_locals f_builtins f_back f_code
    tb_frame tb_next co_code func_globals func_code im_func im_self mro
    """
)
_ATTR_KWARGS = frozenset({"attribute"})
_NUMERIC_FILTERS = frozenset({"length", "count", "int", "abs", "round", "float", "sum"})
_LOOP_NUMBERS = frozenset({"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})


@dataclass
class Issue:
    category: Category
    message: str


@dataclass
class _Check:
    nodes: Any  # jinja2.nodes
    issues: list[Issue] = field(default_factory=list)
    assigned: set[str] = field(default_factory=set)  # names bound by set/with/macro arguments
    loop_bound: set[str] = field(default_factory=set)  # names bound only by for loops over data
    macros: set[str] = field(default_factory=set)

    def add(self, category: Category, message: str) -> None:
        if len(self.issues) < 50 and all(i.message != message for i in self.issues):
            self.issues.append(Issue(category, message))

    def name_issue(self, name: str, what: str) -> None:
        if name.startswith("__") or name in _DANGEROUS_ATTRS:
            self.add(Category.DANGEROUS, f"{what} {name!r} reaches Python internals (a Jinja sandbox escape)")
        elif name.startswith("_"):
            self.add(Category.UNKNOWN, f"{what} {name!r} is private: a sandbox refuses it")

    def fold(self, node: Any) -> str | int | None:
        """The constant value of a string/int expression built from constants, if it is one."""
        n = self.nodes
        if isinstance(node, n.Const) and isinstance(node.value, str | int) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, n.Concat):
            parts = [self.fold(p) for p in node.nodes]
            return "".join(str(p) for p in parts) if all(p is not None for p in parts) else None
        if isinstance(node, n.Add | n.Mul | n.Mod):
            left, right = self.fold(node.left), self.fold(node.right)
            if left is None or right is None:
                return None
            try:
                if isinstance(node, n.Add):
                    return left + right  # type: ignore[operator]
                if isinstance(node, n.Mul):
                    value = left * right  # type: ignore[operator]
                    return value if isinstance(value, int) or len(value) < 4096 else None
                return left % right if isinstance(left, str) else None
            except (TypeError, ValueError, OverflowError):
                return None
        if isinstance(node, n.Filter) and node.node is not None:
            return self.fold_filter(node)
        return None

    def fold_filter(self, node: Any) -> str | None:
        n = self.nodes
        args = [self.fold(a) for a in node.args]
        if any(a is None for a in args):
            return None
        if node.name == "join" and isinstance(node.node, n.List | n.Tuple):
            parts = [self.fold(p) for p in node.node.items]
            sep = str(args[0]) if args else ""
            return sep.join(str(p) for p in parts) if all(p is not None for p in parts) else None
        base = self.fold(node.node)
        if not isinstance(base, str):
            return None
        if node.name == "format":
            try:
                return base % tuple(args)
            except (TypeError, ValueError, OverflowError):
                return None
        simple = {"lower": base.lower(), "upper": base.upper(), "trim": base.strip(), "string": base}
        return base[::-1] if node.name == "reverse" else simple.get(node.name)

    def numeric(self, node: Any) -> bool:
        n = self.nodes
        if isinstance(node, n.Const):
            return isinstance(node.value, int | float) and not isinstance(node.value, bool)
        if isinstance(node, n.Neg | n.Pos):
            return True  # -x of a non-number raises
        if isinstance(node, n.Sub | n.Div | n.FloorDiv | n.Pow):
            return True  # not defined on strings: a number or an error
        if isinstance(node, n.Add | n.Mod):
            return self.numeric(node.left) and self.numeric(node.right)
        if isinstance(node, n.Getattr):
            return isinstance(node.node, n.Name) and node.node.name == "loop" and node.attr in _LOOP_NUMBERS
        if isinstance(node, n.Filter):
            return node.name in _NUMERIC_FILTERS
        return False

    def key(self, node: Any, where: str) -> None:
        """An item key that is not a constant: allowed only when the template cannot have built it."""
        n = self.nodes
        if isinstance(node, n.Slice) or self.numeric(node):
            return
        folded = self.fold(node)
        if isinstance(folded, str):
            if folded.startswith("_") or folded in _DANGEROUS_ATTRS:
                self.name_issue(folded, f"computed {where}")
            return
        if isinstance(node, n.Name) and node.name in self.loop_bound and node.name not in self.assigned:
            return
        self.add(Category.UNKNOWN, f"computed {where} ({type(node).__name__}) that the template may build itself")

    def callee(self, node: Any) -> None:
        n = self.nodes
        if isinstance(node, n.Getattr):
            if node.attr not in _METHODS:
                self.name_issue(node.attr, "method")
                if not node.attr.startswith("_") and node.attr not in _DANGEROUS_ATTRS:
                    self.add(Category.UNKNOWN, f"call of the method {node.attr!r}, outside the allowlist")
            return
        if isinstance(node, n.Name):
            if node.name in self.macros or node.name in _GLOBALS - {"loop"}:
                return
            self.add(Category.UNKNOWN, f"call of {node.name!r}: not a macro of this template or a known global")
            return
        self.add(Category.UNKNOWN, f"call of a computed callee ({type(node).__name__})")


def _bindings(check: _Check, ast: Any) -> None:
    n = check.nodes
    for node in ast.find_all((n.Assign, n.AssignBlock, n.With, n.Macro, n.For, n.CallBlock, n.FromImport)):
        if isinstance(node, n.Macro):
            check.macros.add(node.name)
            check.assigned.update(arg.name for arg in node.args)
        elif isinstance(node, n.For):
            targets = [t.name for t in node.target.find_all(n.Name)] if not isinstance(node.target, n.Name) else []
            names = [node.target.name] if isinstance(node.target, n.Name) else targets
            built = isinstance(node.iter, n.List | n.Tuple | n.Dict | n.Const | n.Concat | n.Add | n.Mul)
            (check.assigned if built else check.loop_bound).update(names)
        elif isinstance(node, n.With):
            check.assigned.update(t.name for target in node.targets for t in target.find_all(n.Name))
            if any(isinstance(t, n.Name) for t in node.targets):
                check.assigned.update(t.name for t in node.targets if isinstance(t, n.Name))
        elif isinstance(node, n.Assign | n.AssignBlock):
            target = node.target
            if isinstance(target, n.Name):
                check.assigned.add(target.name)
            else:
                check.assigned.update(t.name for t in target.find_all(n.Name))


def _walk(check: _Check, ast: Any) -> None:
    n = check.nodes
    for node in ast.find_all(n.Node):
        if isinstance(node, n.Name):
            if node.name in _FORBIDDEN_NAMES:
                what = "reaches the template object" if node.name == "self" else "is a renderer global with internals"
                check.add(Category.UNKNOWN, f"the name {node.name!r} {what}")
            check.name_issue(node.name, "name")
        elif isinstance(node, n.Getattr):
            check.name_issue(node.attr, "attribute")
        elif isinstance(node, n.NSRef):
            check.name_issue(node.attr, "namespace attribute")
        elif isinstance(node, n.Getitem):
            if isinstance(node.arg, n.Const) and isinstance(node.arg.value, str):
                check.name_issue(node.arg.value, "item")
            elif not (isinstance(node.arg, n.Const) and isinstance(node.arg.value, int)):
                check.key(node.arg, "item")
        elif isinstance(node, n.Filter):
            _filter(check, node)
        elif isinstance(node, n.Test):
            if node.name not in _TESTS:
                check.add(Category.UNKNOWN, f"test {node.name!r} is not a standard Jinja test")
        elif isinstance(node, n.Call):
            check.callee(node.node)
            if node.dyn_args is not None or node.dyn_kwargs is not None:
                check.add(Category.UNKNOWN, "call with *args/**kwargs built at render time")
        elif isinstance(node, n.Include | n.Import | n.FromImport | n.Extends):
            check.add(Category.UNKNOWN, f"{type(node).__name__.lower()} loads another template")
        elif isinstance(node, n.CallBlock | n.FilterBlock | n.ExprStmt | n.EvalContextModifier):
            check.add(Category.UNKNOWN, f"{type(node).__name__} block is not used by chat templates")
        elif isinstance(node, n.Const) and isinstance(node.value, str) and node.value.startswith("__"):
            check.add(Category.DANGEROUS, f"the string {node.value[:40]!r} names a Python internal")


def _filter(check: _Check, node: Any) -> None:
    if node.name == "attr":
        folded = check.fold(node.args[0]) if node.args else None
        if isinstance(folded, str) and (folded.startswith("_") or folded in _DANGEROUS_ATTRS):
            check.name_issue(folded, "attr filter name")
        elif folded is None:
            check.add(Category.DANGEROUS, "the attr filter with a name built at render time (a sandbox-escape idiom)")
        else:
            check.add(Category.UNKNOWN, f"the attr filter ({folded!r}): attribute lookup by name")
        return
    if node.name not in _FILTERS:
        check.add(Category.UNKNOWN, f"filter {node.name!r} is not on the chat-template allowlist")
        return
    for kw in node.kwargs:
        if kw.key in _ATTR_KWARGS:
            _attribute_arg(check, kw.value, node.name)
    if node.name in ("map", "selectattr", "rejectattr", "sort", "sum", "unique", "min", "max", "groupby"):
        first = node.args[0] if node.args else None
        if first is not None and node.name in ("selectattr", "rejectattr"):
            _attribute_arg(check, first, node.name)
        elif first is not None and node.name == "map":
            name = check.fold(first)
            if not isinstance(name, str) or name not in _FILTERS:
                check.add(Category.UNKNOWN, f"map applies a filter that is not on the allowlist ({name!r})")
    if node.name in ("select", "reject") and node.args:
        name = check.fold(node.args[0])
        if not isinstance(name, str) or name not in _TESTS:
            check.add(Category.UNKNOWN, f"{node.name} applies a test that is not on the allowlist ({name!r})")
    if node.name in ("selectattr", "rejectattr") and len(node.args) > 1:
        name = check.fold(node.args[1])
        if not isinstance(name, str) or name not in _TESTS:
            check.add(Category.UNKNOWN, f"{node.name} applies a test that is not on the allowlist ({name!r})")


def _attribute_arg(check: _Check, value: Any, filter_name: str) -> None:
    folded = check.fold(value)
    if not isinstance(folded, str):
        check.add(Category.UNKNOWN, f"{filter_name} looks up an attribute whose name is built at render time")
        return
    for part in folded.split("."):
        check.name_issue(part, f"{filter_name} attribute")


def _environment() -> Any:
    import jinja2
    from jinja2 import ext, nodes

    class Generation(ext.Extension):
        """transformers' ``{% generation %}`` marker: parsed as a plain scope."""

        tags = {"generation"}  # noqa: RUF012 - jinja2's Extension API

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return jinja2.Environment(extensions=[Generation, ext.loopcontrols])  # noqa: S701 - parsed, never rendered


def check_template(source: str) -> Iterator[Issue]:
    """Blocking issues of a chat template (empty when it only does what real templates do)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        yield Issue(Category.LIMIT, f"chat template of {len(source)} characters is too large to check")
        return
    import jinja2
    from jinja2 import nodes

    try:
        ast = _environment().parse(source)
    except (jinja2.TemplateSyntaxError, RecursionError) as exc:
        yield Issue(Category.MALFORMED, f"chat template does not parse as Jinja: {str(exc)[:120]}")
        return
    check = _Check(nodes)
    _bindings(check, ast)
    try:
        _walk(check, ast)
    except RecursionError:
        check.add(Category.LIMIT, "chat template nested too deeply to check")
    yield from check.issues
