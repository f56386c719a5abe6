"""`qlorafx judge`: finetunes compared the way the QLoRA paper compared Guanaco with ChatGPT.

A question set, two or more contestants and a judge, all OpenAI-compatible endpoints. Each
contestant answers each question once (cached); the judge sees every pair of answers in both
orders (cached); the verdicts become wins, ties and losses, win rates with bootstrap intervals,
Elo over random orderings of the matches, the judge's first-position preference, and relative
scores against a reference. One file per step:

    spec.py (the YAML)   questions.py   client.py (endpoints)   cache.py   answers.py
    verdicts.py (prompt, strict parser)   compare.py (judgments, matches)   ratings.py
    report.py + plot.py (results.json, report.md, ratings.png)   run_card.py (a run's model card)
    comparison.py (top to bottom)

Nothing here imports torch.
"""
