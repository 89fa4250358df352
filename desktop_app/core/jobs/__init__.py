"""Training jobs handed to other machines (a cluster, a multi-GPU box) and brought back.

``export.py`` writes a job folder (``rlhf-desk export-job``), ``scripts.py`` the launcher, the
Slurm example and the README in it, ``folder.py`` reads one, and ``importing.py`` brings its
finished run into the workspace (``rlhf-desk import-run``). No torch here: the job itself runs
through the CLI's own training commands (``rlhf-desk run-job``).
"""
