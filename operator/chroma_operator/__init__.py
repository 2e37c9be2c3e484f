"""The Chroma Kubernetes operator (kopf): ChromaCluster, Dataset and IndexJob.

Owns: turning the ``chroma.dev/v1alpha1`` custom resources into Kubernetes objects and
reporting their real state back in ``status``. Layers, one direction only:

    main -> handlers (kopf, thin) -> reconcile/ (order of work, one module per kind)
                                        |-> kube (I/O, the only door to the API server)
                                        |-> manifests/ (pure builders)
                                        |-> status/ (pure derivation, one module per kind)
                                               '-> status_types (the status contract)
    constants, config: read by every layer; import nothing of the above

Must not import the service components (``chroma.*``): it only needs the image's entry
points. The one exception is ``chroma.indexjob``, the dependency-free IndexJob contract
(kinds, names, ``spec.params`` rules, ``--param`` args) it shares with the API's launcher
and ``chroma op run``; ``tests/unit/test_indexjob_contract.py`` checks that nothing else
is imported. Entry point: ``chroma-operator`` (``chroma_operator.main:main``).
"""
