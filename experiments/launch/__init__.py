"""Launchers: several processes of one segjax command (local.py), a Cloud TPU pod (tpu_pod.sh).

docs/scale.md says how a multi-process run is joined, how the data is shared out
per host, and what a preemption does.
"""
