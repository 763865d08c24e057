"""DiscoveryServer: where change requests arrive and pushes leave.

Go: ``DiscoveryServer`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go).
Every part of istiod that notices a change calls ``ConfigUpdate(PushRequest)``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L314-L325); the request
waits in a channel until ``Start`` runs the debounce loop (started by initDiscoveryService).

mesh keeps that shape: ``config_update`` records every request (so notebooks can show who asked
for a push and why) and queues it; ``start`` feeds the queue into the ``Debouncer`` and from then
on every request goes straight to it. What a push does to connected proxies (push context,
generators, ADS) arrives with the push-pipeline issue; until then a push is recorded in ``pushes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mesh.clock import Clock
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.debounce import DebouncedPush, Debouncer

log = logging.getLogger(__name__)

MAX_RECORDED_REQUESTS = 10_000  # ConfigUpdates kept for /debug/push_requests and the teaching timelines


@dataclass(frozen=True)
class RecordedRequest:
    at: float
    request: PushRequest


class DiscoveryServer:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.requests: list[RecordedRequest] = []  # every ConfigUpdate, in order (the last MAX_RECORDED_REQUESTS)
        self.pushes: list[DebouncedPush] = []  # every push that left the debouncer
        self.push_handlers: list[Callable[[DebouncedPush], object]] = []
        self.debouncer = Debouncer(clock, self._on_push)
        self._queued: list[PushRequest] = []
        self.endpoint_index: dict[tuple[str, str], frozenset[str]] = {}  # services seen → their accounts
        # mesh.autoregistration's WorkloadEntryController (stage 7 sets it, ADS calls it on connect
        # and disconnect, ``start`` runs it): Go's ``DiscoveryServer.WorkloadEntryController``.
        self.workload_entry_controller = None
        self.started = False

    def config_update(self, request: PushRequest) -> None:
        """``ConfigUpdate``: ask for a push. Queued until ``start``, debounced after."""
        if not request.start:
            request.start = self.clock.now()
        self.requests.append(RecordedRequest(self.clock.now(), request))
        if len(self.requests) > 2 * MAX_RECORDED_REQUESTS:  # a long-running serve: keep the recent ones
            del self.requests[:-MAX_RECORDED_REQUESTS]
        if log.isEnabledFor(logging.INFO):
            log.info("push requested: %s", request.describe())
        if self.started:
            self.debouncer.submit(request)
        else:
            self._queued.append(request)

    def eds_update(self, hostname: str, namespace: str, endpoints: list) -> None:
        """``EDSUpdate``: new endpoints for a service, and how big a push they need.

        Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L65-L79 and the
        push-type decision in ``edsCacheUpdate`` (eds.go#L96-L194). Usually an incremental
        (EDS-only) push; but a service seen for the first time needs a full push (its cluster
        does not exist in any proxy yet), and so does a change of the service accounts behind
        it (they appear in the cluster's TLS settings). Going to zero endpoints keeps the
        service known, so a crash-looping pod does not cause full pushes.
        """
        key = (hostname, namespace)
        accounts = frozenset(e.service_account for e in endpoints if e.service_account)
        full = False
        if endpoints:
            if key not in self.endpoint_index:
                full = True
            elif accounts != self.endpoint_index[key]:
                full = True
            self.endpoint_index[key] = accounts
        self.config_update(PushRequest.of(TriggerReason.ENDPOINT, full=full,
                                          configs={ConfigKey("ServiceEntry", hostname, namespace)}))

    def start(self) -> None:
        """Run the debounce loop (``DiscoveryServer.Start`` → ``handleUpdates``)."""
        if self.started:
            return
        self.started = True
        if self.workload_entry_controller is not None:
            self.workload_entry_controller.run()  # discovery.go#L230
        queued, self._queued = self._queued, []
        for request in queued:
            self.debouncer.submit(request)

    def stop(self) -> None:
        self.debouncer.stop()
        if self.workload_entry_controller is not None:
            self.workload_entry_controller.stop()

    @property
    def queued(self) -> list[PushRequest]:
        return list(self._queued)

    def _on_push(self, push: DebouncedPush) -> None:
        self.pushes.append(push)
        for handler in list(self.push_handlers):
            handler(push)
