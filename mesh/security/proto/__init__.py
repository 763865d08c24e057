"""Generated protobuf and gRPC modules for ``istio.v1.auth.IstioCertificateService``.

``ca.proto`` is written from the public API (istio/api ``security/v1alpha1/ca.proto``);
``ca_pb2.py`` and ``ca_pb2_grpc.py`` are generated from it by ``regenerate.sh`` and committed.
Go's generated counterpart: https://github.com/istio/api/blob/1.19.0/security/v1alpha1/ca.pb.go
"""
