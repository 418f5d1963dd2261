"""template.yaml -> CloudFormation, offline, and the intrinsic functions the local stack resolves.

``translate`` runs aws-sam-translator (the library ``sam build``/``sam deploy`` use)
without AWS: code locations are rewritten to objects in a local S3 bucket, and AWS
managed policy ARNs come from the map the translator ships instead of IAM.

``Resolver`` evaluates ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::If``,
``Fn::Select``, ``Fn::Split`` and conditions against a created stack. Written here
because moto's CloudFormation drops every value that refers to a resource type it
does not implement (the webhook secret, the HTTP API), and the functions need their
whole environment.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"  # moto's default account
NO_VALUE = object()


class TemplateError(Exception):
    """The template uses something the local stack cannot reproduce."""


def load_sam_template(path: Path) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(path.read_text())


@dataclass
class CodeAsset:
    """A local folder the template deploys as a zip (a function's CodeUri, a layer's ContentUri)."""

    logical_id: str
    path: Path
    key: str


@dataclass
class Translated:
    sam: dict[str, Any]  # the SAM template as written (with Globals), code paths untouched
    cfn: dict[str, Any]  # the CloudFormation template the transform produced
    assets: list[CodeAsset] = field(default_factory=list)
    function_dirs: dict[str, Path] = field(default_factory=dict)  # function logical id -> CodeUri folder
    layer_dirs: list[Path] = field(default_factory=list)


class _BundledPolicies:
    """ManagedPolicyLoader stand-in: AWS managed policy names -> ARNs, without calling IAM."""

    def load(self) -> dict[str, str]:
        import samtranslator

        data = Path(samtranslator.__file__).parent / "internal" / "data" / "aws_managed_policies.json"
        return dict(json.loads(data.read_text())["aws"])


def translate(template_path: Path, parameters: Mapping[str, str], bucket: str) -> Translated:
    """The SAM template as CloudFormation, with code in ``s3://bucket/<LogicalId>.zip``."""
    from samtranslator.translator.transform import transform

    sam = load_sam_template(template_path)
    base = template_path.parent
    work = copy.deepcopy(sam)
    result = Translated(sam=sam, cfn={})
    for logical_id, resource in (work.get("Resources") or {}).items():
        props = resource.get("Properties") or {}
        kind = resource.get("Type")
        prop = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(kind or "")
        if prop is None:
            continue
        uri = props.get(prop) or _global(sam, kind, prop)
        if not isinstance(uri, str) or uri.startswith("s3://"):
            raise TemplateError(f"{logical_id}.{prop} must be a local folder for the local stack, got {uri!r}")
        folder = (base / uri).resolve()
        if not folder.is_dir():
            raise TemplateError(f"{logical_id}.{prop}: {folder} is not a folder")
        key = f"{logical_id}.zip"
        props[prop] = {"Bucket": bucket, "Key": key}
        resource["Properties"] = props
        result.assets.append(CodeAsset(logical_id, folder, key))
        if kind == "AWS::Serverless::Function":
            result.function_dirs[logical_id] = folder
        else:
            # A python layer is either the package folder itself (BuildMethod) or has python/ inside.
            result.layer_dirs.append(folder / "python" if (folder / "python").is_dir() else folder)
    result.cfn = transform(work, dict(parameters), _BundledPolicies())
    return result


def _global(sam: dict[str, Any], kind: str | None, prop: str) -> Any:
    section = {"AWS::Serverless::Function": "Function", "AWS::Serverless::LayerVersion": "LayerVersion"}.get(kind or "")
    return ((sam.get("Globals") or {}).get(section or "") or {}).get(prop)


def parameter_values(cfn: dict[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Every template parameter's value: the override, else the default (as a string, as CloudFormation has it)."""
    declared = cfn.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}; known: {', '.join(declared)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            default = spec["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        else:
            raise TemplateError(f"template parameter {name} has no default: pass --param {name}=...")
    return values


# Ref and GetAtt per resource type, from the physical id (and a lookup when it needs AWS).
AttributeGetter = Callable[[str, str, str], Any]  # (resource type, physical id, attribute) -> value


class Resolver:
    """Evaluates intrinsic functions against a created stack."""

    def __init__(
        self,
        cfn: dict[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        physical_ids: Mapping[str, str],
        get_attribute: AttributeGetter,
    ) -> None:
        self.cfn = cfn
        self.parameters = dict(parameters)
        self.pseudo = dict(pseudo)
        self.physical_ids = dict(physical_ids)
        self.get_attribute = get_attribute
        self._conditions: dict[str, bool] = {}

    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.cfn.get("Resources") or {})

    def is_created(self, logical_id: str) -> bool:
        condition = self.resources()[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.cfn.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    # -- the intrinsics ---------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateError(f"Ref {name}: no such parameter, or the resource was not created locally")

    def get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        else:
            logical_id, attribute = arg[0], self.resolve(arg[1])
        resource = self.resources().get(logical_id)
        if resource is None or logical_id not in self.physical_ids:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: the resource was not created locally")
        return self.get_attribute(resource["Type"], self.physical_ids[logical_id], attribute)

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(name))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def join(self, arg: Any) -> str:
        delimiter, values = arg
        return str(delimiter).join(str(v) for v in self.resolve(values))

    def if_(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def select(self, arg: Any) -> Any:
        index, values = arg
        return self.resolve(values)[int(self.resolve(index))]

    def split(self, arg: Any) -> list[str]:
        delimiter, text = arg
        return str(self.resolve(text)).split(delimiter)

    def equals(self, arg: Any) -> bool:
        left, right = (self.resolve(v) for v in arg)
        return str(left) == str(right)

    def not_(self, arg: Any) -> bool:
        return not self.resolve(arg[0])

    def and_(self, arg: Any) -> bool:
        return all(self.resolve(v) for v in arg)

    def or_(self, arg: Any) -> bool:
        return any(self.resolve(v) for v in arg)


_INTRINSICS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": Resolver.ref,
    "Fn::GetAtt": Resolver.get_att,
    "Fn::Sub": Resolver.sub,
    "Fn::Join": Resolver.join,
    "Fn::If": Resolver.if_,
    "Fn::Select": Resolver.select,
    "Fn::Split": Resolver.split,
    "Fn::Equals": Resolver.equals,
    "Fn::Not": Resolver.not_,
    "Fn::And": Resolver.and_,
    "Fn::Or": Resolver.or_,
    "Condition": lambda r, name: r.condition(name),
}
