"""Deployment beyond one machine: container build contexts and Kubernetes/KServe manifests.

``ferry build`` (:mod:`ferry.deploy.container`) writes a Docker build context for chosen
model versions; ``ferry deploy k8s`` (:mod:`ferry.deploy.k8s`, :mod:`ferry.deploy.kserve`)
writes the manifests that run that image on a cluster. Neither talks to Docker or a
cluster: they write files and print the commands to run.

This package reads the repository and the server settings only: no engine, no protocols.
"""

from __future__ import annotations
