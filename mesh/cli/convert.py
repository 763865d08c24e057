"""``python -m mesh convert ingress|gateway-api -f FILE``: print the Istio config istiod would derive.

istiod converts Ingress and Gateway API objects inside its config stores
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/ingress/controller.go#L286-L316 and
https://github.com/istio/istio/tree/1.19.0/pilot/pkg/config/kube/gateway); this command runs the
same conversion on a file and prints the generated Gateways, then VirtualServices, each sorted
by namespace/name, as a multi-document YAML stream.
"""

from __future__ import annotations

import sys

from mesh.cli import UsageError
from mesh.cli._documents import dump_documents, load_documents

KIND_ORDER = {"Gateway": 0, "VirtualService": 1}


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert Ingress or Gateway API objects to Istio Gateway/VirtualService")
    p.add_argument("source", choices=("ingress", "gateway-api"), help="what the input file holds")
    p.add_argument("-f", "--filename", required=True, help="multi-document YAML input ('-' for stdin)")
    p.add_argument("--domain-suffix", default="cluster.local", help="cluster DNS domain (default cluster.local)")
    p.add_argument("--ingress-namespace", default="istio-system",
                   help="namespace of generated Ingress Gateways, istiod's K8S_INGRESS_NS (default istio-system)")
    p.add_argument("--mesh-config", help="mesh config YAML file (ingressClass, ingressControllerMode, ...)")
    p.set_defaults(func=run)


def sort_output(objects: list[dict]) -> list[dict]:
    """Gateways first, then VirtualServices (anything else last), each by namespace/name."""
    def key(o: dict) -> tuple:
        meta = o.get("metadata") or {}
        return (KIND_ORDER.get(o.get("kind"), 2), o.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
    return sorted(objects, key=key)


def _convert_ingress(objects: list[dict], args) -> list[dict]:
    from mesh.configcontroller import ingress

    mesh_config = None
    if args.mesh_config:
        from mesh.config.mesh import read_mesh_config_file

        try:
            mesh_config = read_mesh_config_file(args.mesh_config)
        except (OSError, ValueError) as err:
            raise UsageError(str(err)) from err
    try:
        return ingress.convert(objects, mesh_config, args.domain_suffix, args.ingress_namespace)
    except ingress.IngressConversionError as err:
        raise UsageError(f"{args.filename}: {err}") from err


def _convert_gateway_api(objects: list[dict], args) -> list[dict]:
    try:
        from mesh.configcontroller.gateway_api import convert
    except ImportError as err:
        raise UsageError("convert gateway-api: not implemented yet (mesh.configcontroller.gateway_api.convert is "
                         "missing)") from err
    try:
        return convert(objects, domain_suffix=args.domain_suffix)
    except ValueError as err:
        raise UsageError(f"{args.filename}: {err}") from err


def run(args) -> int:
    objects = [doc.obj for doc in load_documents(args.filename)]
    if args.source == "ingress":
        out = _convert_ingress(objects, args)
    else:
        out = _convert_gateway_api(objects, args)
    if not out:
        hint = " (in STRICT mode an Ingress needs class istio)" if args.source == "ingress" else ""
        print(f"# no Istio objects generated from {args.filename}{hint}", file=sys.stderr)
    sys.stdout.write(dump_documents(sort_output(out)))
    return 0
