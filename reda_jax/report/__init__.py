"""Report code: what turns finished runs into the paper's tables and figures (the
didactic example, the encoder read-outs' tables, the paper's published numbers, plots).
Used by the apps in experiments/; nothing in the learners imports it."""
