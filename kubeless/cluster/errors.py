"""Errors of cluster bootstrap (init, join, join tokens, the node's state dir).

    ClusterError
    ├── TokenMalformed   the text is not a SWMTKN-1 token at all (user input)
    ├── TokenRefused     a well-formed token this cluster does not accept:
    │                    another cluster's (CA digest differs), or a wrong or
    │                    rotated secret (terminal: nothing was registered)
    ├── ClusterExists    ``init`` found a cluster record under the prefix
    ├── NoCluster        ``join`` or a restart found no cluster record
    ├── NodeNameTaken    ``join`` found a Node of that name already registered
    ├── StateDirError    the state dir is unreadable, foreign or inconsistent
    ├── CAError          a CA, key, certificate or request could not be made or read
    ├── JoinFailed       the join endpoint could not be reached, was not the token's
    │                    cluster's, or refused the request (nothing was written)
    ├── NoSecretsKey     the cluster record has no secretsKey: no Secret can be sealed
    └── EtcdError        a local etcd member (``kubeless up``, tests) cannot run
        ├── EtcdMissing      Debian's etcd-server is not installed
        ├── EtcdPortTaken    another etcd already answers on the client URL
        ├── EtcdElsewhere    this data dir's etcd still runs, on another port
        ├── EtcdExited       the member exited while starting (its log's tail)
        └── EtcdSilent       the member did not answer within its deadline

Every message is one sentence a user can act on; the CLI prints it as is.
Store errors (etcd unreachable, conflicts) are not translated here: they
pass through as ``kubeless.store`` errors.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Any bootstrap failure a user can act on."""


class TokenMalformed(ClusterError):
    """The token does not have the SWMTKN-1-<digest>-<secret> shape."""


class TokenRefused(ClusterError):
    """The token is well formed but this cluster does not accept it."""


class ClusterExists(ClusterError):
    """A cluster record already exists under the prefix."""


class NoCluster(ClusterError):
    """There is no cluster record under the prefix."""


class NodeNameTaken(ClusterError):
    """A node of that name is already registered."""


class StateDirError(ClusterError):
    """The node's state directory cannot be used."""


class CAError(ClusterError):
    """The CA, a key, a certificate or a request could not be made, read or signed."""


class JoinFailed(ClusterError):
    """Joining through a manager's join endpoint failed; nothing was written."""


class EtcdError(ClusterError):
    """A local etcd member (``kubeless.cluster.etcd_server``) cannot run."""


class EtcdMissing(EtcdError):
    """The etcd binary is not there."""


class EtcdPortTaken(EtcdError):
    """Another etcd already answers on the member's client URL."""

    def __init__(self, url: str) -> None:
        super().__init__(f"another etcd already answers on {url}")
        self.url = url


class EtcdElsewhere(EtcdError):
    """The etcd of this data dir still runs, listening on another URL."""

    def __init__(self, pid: int, url: str) -> None:
        super().__init__(f"the etcd of this data dir still runs (pid {pid}) elsewhere than {url}")
        self.pid, self.url = pid, url


class EtcdExited(EtcdError):
    """The member exited while starting."""


class EtcdSilent(EtcdError):
    """The member did not answer within its deadline."""


class NoSecretsKey(ClusterError):
    """The cluster record holds no ``secretsKey`` to seal a Secret to (or not a valid one)."""
