"""Stand-ins for the distributed-runtime tests: a fake verl that joins a Ray cluster, a local Ray cluster
(head + worker on loopback), a single-node Slurm (slurmctld + slurmd + munged) and cells that run the fake."""
