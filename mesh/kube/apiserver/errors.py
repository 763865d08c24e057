"""Kubernetes ``Status`` errors: every failure the replay API server reports is one of these.

kube-apiserver answers a failed request with a ``Status`` object (``kind: Status``) whose
``code`` is the HTTP status and whose ``reason`` is a machine-readable word
(``NotFound``, ``AlreadyExists``, ``Conflict``, ``Invalid``, ...); ``details.causes`` names the
bad fields of a 422. kubectl and the ``kubernetes`` client print ``message`` and branch on
``code``/``reason``, so matching them is what makes the replay server feel real.

Istio's own code branches on these reasons the same way: when istiod creates a namespace's
root-certificate ConfigMap, an ``AlreadyExists`` answer counts as success
(https://github.com/istio/istio/blob/1.19.0/security/pkg/k8s/configutil.go#L43-L48).
"""

from __future__ import annotations

from mesh.kube.kinds import Kind


class StatusError(Exception):
    """An error the server turns into a ``Status`` response with HTTP code ``code``."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:  # metav1.Status omits an empty reason (a webhook's denial may have none)
            del body["reason"]
        if self.details:
            body["details"] = self.details
        return body


def _resource(kind: Kind) -> str:
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def _details(kind: Kind, name: str) -> dict:
    return {"name": name, "group": kind.group, "kind": kind.plural}


def not_found(kind: Kind, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_resource(kind)} "{name}" not found', _details(kind, name))


def already_exists(kind: Kind, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_resource(kind)} "{name}" already exists', _details(kind, name))


def conflict(kind: Kind, name: str, why: str) -> StatusError:
    message = f'Operation cannot be fulfilled on {_resource(kind)} "{name}": {why}'
    return StatusError(409, "Conflict", message, _details(kind, name))


def invalid(kind: Kind, name: str, causes: list[tuple[str, str]]) -> StatusError:
    """422: ``causes`` is a list of (field path, what is wrong with it)."""
    text = "; ".join(f"{field}: {message}" for field, message in causes)
    details = _details(kind, name) | {
        "kind": kind.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
    }
    return StatusError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                       f'accepted media types include: application/json (got "{content_type}")')


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(method: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                       f"resource ({method})")


def not_found_path(path: str) -> StatusError:
    return StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")
