// Package jobs is shellgate's background work around stacks: the deployment queue
// worker that puts attached keys into authorized_keys on every server (and takes them
// out again), the gateway's own SSH identity it deploys with, and the helpers that
// turn stored servers into terminal.Targets with their pinned host keys and jump
// chains.
//
// It sits between store (the queue, claimed with one conditional UPDATE so replicas
// never run the same job) and terminal (the SSH side, behind the small Deployer
// interface). It knows nothing of HTTP.
package jobs
