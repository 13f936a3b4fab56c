"""Scale-out: long videos and folders of them dreamed shot by shot on Ray workers.

A job's path through the package:
1. ``plan``: one decoding pass finds the shots; the video is cut into segments at scene
   cuts, else at keyframes, of bounded length, with a handover where a cut falls inside a shot.
2. ``workdir``: the plan and every finished piece are kept beside the output, for a resume.
3. ``worker``: a worker seeks to its segment, dreams it in flow mode and encodes a piece
   with the output's own codec; ``pool`` makes workers Ray actors that load the model once.
4. ``scheduler``: segments go to idle workers, pieces come back; ``progress`` shows them.
5. ``join``: the pieces are joined by stream copy, with the input's audio and timestamps.
``command`` and ``batch`` are what the command line calls. Ray (an optional extra,
``pip install 'streamdream[cluster]'``) is imported by ``pool`` only, when a run starts.
"""
