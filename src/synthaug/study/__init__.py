"""Study runner: the stage graph over one run directory, resumable stage by stage."""
