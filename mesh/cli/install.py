"""``python -m mesh install``: render a profile's manifests, then print them or apply them, like
``istioctl install`` (https://github.com/istio/istio/blob/1.19.0/operator/cmd/mesh/install.go#L152-L247).

``--dry-run`` prints the objects as multi-document YAML in apply order (what ``istioctl manifest
generate`` prints); ``--kubeconfig K`` applies them to that cluster — a real one or ``python -m
mesh apiserver`` — component by component, waits for the Deployments (``--no-wait`` or
``--wait-timeout``), prunes what an earlier install of the same owner had and this one does not,
and saves the effective IstioOperator as ``installed-state``. A bad IstioOperator or ``--set``
changes nothing and exits 2.
"""

from __future__ import annotations

import sys

import yaml

from mesh.cli import UsageError
from mesh.install import apply as applier
from mesh.install import iop as iopmod
from mesh.install import render
from mesh.install.overlay import OverlayError


def register(subparsers) -> None:
    p = subparsers.add_parser("install", help="render and apply (or print) an Istio installation (like istioctl install)",
                              description="Install Istio 1.19 from a profile, IstioOperator files and --set overrides.")
    p.add_argument("--profile", default=None, help="profile to start from (default: default)")
    p.add_argument("-f", "--filename", action="append", default=[], help="IstioOperator file(s), laid over in order")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                   help="override a spec path: components.pilot.k8s.replicaCount=2, "
                        "'components.ingressGateways[name:istio-ingressgateway].enabled=false'")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--kubeconfig", metavar="K", help="apply to the cluster of this kubeconfig")
    where.add_argument("--dry-run", action="store_true", help="print the manifests instead of applying them")
    p.add_argument("--only", default="", metavar="KIND[/NAME],...",
                   help="with --dry-run: print only these objects, in this order (e.g. ConfigMap/istio,Deployment)")
    p.add_argument("--component", action="append", default=[], choices=render.COMPONENT_ORDER,
                   help="with --dry-run: print only this component's objects (may be repeated)")
    p.add_argument("--owner-labels", action="store_true",
                   help="with --dry-run: add the owner labels an install stamps on each object")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the Deployments to be Available")
    p.add_argument("--wait-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for each component's Deployments (default 300)")
    p.set_defaults(func=run)


def _selected(obj: dict, only: list[tuple[str, str]]) -> bool:
    if not only:
        return True
    kind, name = obj["kind"], obj["metadata"]["name"]
    return any(kind == k and (not n or name == n) for k, n in only)


def manifests(args) -> tuple[dict, dict[str, list[dict]]]:
    try:
        effective = iopmod.generate_from_files(args.filename, args.profile, args.sets)
        return effective, render.render(effective)
    except (iopmod.IstioOperatorError, OverlayError) as err:
        raise UsageError(str(err)) from None


def run(args) -> int:
    effective, rendered = manifests(args)
    if args.dry_run:
        only = [tuple((part.strip().split("/", 1) + [""])[:2]) for part in args.only.split(",") if part.strip()]
        if args.component:
            rendered = {name: objects for name, objects in rendered.items() if name in args.component}
        if args.owner_labels:
            owner = _owner(effective)
            rendered = {name: [applier.owned(o, owner, name) for o in objects] for name, objects in rendered.items()}
        objects = render.flatten(rendered)
        if only:  # in the order the --only list names them (apply order within one entry)
            objects = [o for wanted in only for o in objects if _selected(o, [wanted])]
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False))
        return 0
    if args.only or args.component or args.owner_labels:
        raise UsageError("--only, --component and --owner-labels go with --dry-run")
    return _apply(args, effective, rendered)


def _owner(effective: dict) -> applier.Owner:
    namespace = ((effective["spec"].get("values") or {}).get("global") or {}).get("istioNamespace") or "istio-system"
    # istioctl's savedIOPName: installed-state[-<IstioOperator name>][-<revision>] (install.go#L285-L296)
    revision = effective["spec"].get("revision") or ""
    parts = [applier.INSTALLED_STATE, (effective.get("metadata") or {}).get("name") or "", revision]
    return applier.Owner(name="-".join(p for p in parts if p), namespace=namespace, revision=revision)


def _apply(args, effective: dict, rendered: dict) -> int:
    from mesh.kube.live import ApiError, LiveClient

    owner = _owner(effective)
    try:
        client = LiveClient(args.kubeconfig)
    except Exception as err:  # an unreadable kubeconfig, a server that is not there
        raise UsageError(f"--kubeconfig {args.kubeconfig}: {err}") from None
    try:
        result = applier.apply_rendered(client, rendered, owner, wait=not args.no_wait, timeout=args.wait_timeout,
                                        progress=lambda line: print(f"- {line}", flush=True))
        applier.apply_object(client, applier.saved_iop(effective, owner), result)
    except (applier.ApplyError, ApiError, OSError) as err:
        print(f"error: install failed: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"Installation complete: {result.summary()}")
    return 0
