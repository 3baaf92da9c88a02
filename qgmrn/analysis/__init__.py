"""From run directories to the paper's tables and figures; notebooks call only these.

- `tables`: Tables 1 and 2, the paper's published numbers beside ours (csv + markdown).
- `routing`: routing_paths.npz, stages, t-SNE per stage (Fig. 2), execution ratios (Fig. 3).
- `saliency`: gradient saliency of one image under several questions (Fig. 4).
- `curves`: learning curves (metrics.jsonl) and accuracy by question type (eval.json).
- `gumbel_demo`: the Gumbel-sigmoid / straight-through walkthrough of notebook 02.
- `runs`: loading a trained run for inspection (model, vocabulary, images, questions).

Every function takes paths or arrays and returns a figure or a DataFrame; figures and tables
are written atomically (`qgmrn.fileio`).
"""
