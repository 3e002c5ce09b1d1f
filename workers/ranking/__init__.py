"""How a search is answered: one module per stage, composed in stages.py (STAGES), every number in tunables.py with
the measurement that chose it, and docs/retrieval.md for what each stage is for and what it bought.

    query.py         the query: its vector, raw vector, keypoints and signature
    candidates.py    the table of candidates and the evidence gathered on each
    global_knn.py    the k-NN of the query's vector (pgvector HNSW): the similar results
    signature.py     the 16x16 signature: the near duplicate, the lookalike, each candidate's likeness
    words.py         visual words: the images whose keypoints aggregate nearest the query's
    copy_space.py    the projection's copy space: its nearest, and where the lead is picked
    verification.py  SIFT keypoints and a RANSAC transform: each candidate's inliers
    identical.py     the query's very file
    fusion.py        the order of the results from that evidence
    answer.py        a search job answered: embed, rank, store the results
"""
