"""The Chroma Kubernetes operator (kopf): ChromaCluster, Dataset and IndexJob.

Owns: turning the ``chroma.dev/v1alpha1`` custom resources into Kubernetes objects and
reporting their real state back in ``status``. Layers, one direction only:

    main -> handlers (kopf, thin) -> reconcile (order of work) -> kube (I/O)
                                                  |-> manifests (pure builders)
                                                  |-> status (pure derivation)

Must not import the service components (``chroma.*``): it only needs the image's entry
points. Entry point: ``chroma-operator`` (``chroma_operator.main:main``).
"""
