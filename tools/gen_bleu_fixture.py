#!/usr/bin/env python3
"""Reference values for rl/bleu.* and rl/cluster.*, from NLTK and scikit-learn.

    python3 -m venv /tmp/fixvenv && /tmp/fixvenv/bin/pip install nltk scikit-learn numpy
    /tmp/fixvenv/bin/python tools/gen_bleu_fixture.py > tests/rl/fixtures/bleu_cluster.json

Writes JSON with
  bleu:     [{ref, hyp, bleu}]  nltk sentence_bleu([ref.split()], hyp.split(),
            smoothing_function=SmoothingFunction().method1), default 4-gram uniform weights
  groups:   [{questions, symmetry, labels}]  the questions' 1 - BLEU distance matrix
            (average of both directions, or only hyp=i/ref=j for i<j as sklearn reads an
            asymmetric matrix) clustered by sklearn AgglomerativeClustering(n_clusters=None,
            metric='precomputed', linkage='average', distance_threshold=0.5)
  matrices: [{n, upper, labels}]  random symmetric distances (upper triangle, row-major)
            clustered the same way
The C++ tests compare partitions (labels up to renaming). Cases whose merge heights come
within 1e-9 of the threshold are skipped so that rounding cannot flip the answer.
"""
import json
import random
import sys
import warnings

import numpy as np
import nltk
import sklearn
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from sklearn.cluster import AgglomerativeClustering

warnings.filterwarnings("ignore")  # NLTK warns about zero n-gram counts
SMOOTH = SmoothingFunction().method1
THRESHOLD = 0.5


def bleu(ref, hyp):
    return float(sentence_bleu([ref.split()], hyp.split(), smoothing_function=SMOOTH))


def cluster(dist):
    n = dist.shape[0]
    if n < 2:
        return [0] * n, True
    model = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                    distance_threshold=THRESHOLD, compute_distances=True)
    labels = model.fit_predict(dist)
    safe = bool(np.all(np.abs(model.distances_ - THRESHOLD) > 1e-9))
    return [int(x) for x in labels], safe


def bleu_cases(rng):
    fixed = [
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("the cat sat on the mat", "the cat sat on a mat"),
        ("what", "what"),
        ("how many", "how many"),
        ("how many circles", "how many circles"),
        ("how many red circles", "how many red circles"),
        ("", "how many red circles"),
        ("how many red circles", ""),
        ("", ""),
        ("a b c d", "e f g h"),
        ("the the the the", "the the the the the the the"),
        ("the cat is on the mat", "the the the the the the the"),
        ("  how\tmany \n red   circles ?", "how many red\x0bcircles are there ?"),
        ("is the blue square left of the red circle ?", "is the red circle left of the blue square ?"),
        ("how many shapes are green ?", "how many green shapes are there in the image ?"),
        ("a b c d e f g h i j k l", "a b c"),
        ("a b", "a b c d e f g h"),
    ]
    cases = [{"ref": r, "hyp": h, "bleu": bleu(r, h)} for r, h in fixed]
    vocab = "the a red blue green circle square triangle how many is of left right above".split()
    for _ in range(120):
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 14)))
        if rng.random() < 0.5:  # a perturbed copy: shares many n-grams
            words = ref.split()
            for _ in range(rng.randint(0, 3)):
                if words and rng.random() < 0.5:
                    words.pop(rng.randrange(len(words)))
                else:
                    words.insert(rng.randint(0, len(words)), rng.choice(vocab))
            hyp = " ".join(words)
        else:
            hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 14)))
        cases.append({"ref": ref, "hyp": hyp, "bleu": bleu(ref, hyp)})
    return cases


def distance_matrix(questions, symmetry):
    n = len(questions)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            forward = bleu(questions[j], questions[i])  # hyp i, ref j
            if symmetry == "average":
                b = 0.5 * (forward + bleu(questions[i], questions[j]))
                d[i, j] = d[j, i] = 1.0 - b
            else:  # 'upper': the full asymmetric matrix; sklearn reads only i < j
                d[i, j] = 1.0 - forward
                d[j, i] = 1.0 - bleu(questions[i], questions[j])  # hyp j, ref i
    return d


def group_cases(rng):
    colors = ["red", "blue", "green", "yellow"]
    shapes = ["circles", "squares", "triangles"]
    templates = [
        "how many {c} {s} are in the image ?",
        "how many {c} {s} are there ?",
        "are there more {c} {s} than {c2} {s2} ?",
        "is the {c} shape to the left of the {c2} shape ?",
        "what color is the largest of the {s} ?",
        "how many {s} are not {c} ?",
    ]
    cases = []
    while len(cases) < 24:
        g = rng.choice([2, 3, 5, 8, 8, 8, 12])
        questions = []
        for _ in range(g):
            if questions and rng.random() < 0.3:
                questions.append(rng.choice(questions))  # exact duplicate
                continue
            t = rng.choice(templates)
            questions.append(t.format(c=rng.choice(colors), s=rng.choice(shapes),
                                      c2=rng.choice(colors), s2=rng.choice(shapes)))
        symmetry = "average" if len(cases) % 3 else "upper"
        labels, safe = cluster(distance_matrix(questions, symmetry))
        if safe:
            cases.append({"questions": questions, "symmetry": symmetry, "labels": labels})
    # a group of identical questions is one cluster
    same = ["how many red circles are in the image ?"] * 8
    labels, _ = cluster(distance_matrix(same, "average"))
    cases.append({"questions": same, "symmetry": "average", "labels": labels})
    return cases


def matrix_cases(rng):
    cases = []
    while len(cases) < 24:
        n = rng.randint(2, 16)
        kind = len(cases) % 3
        d = np.zeros((n, n))
        centers = [rng.random() for _ in range(rng.randint(1, 4))]
        assign = [rng.randrange(len(centers)) for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                if kind == 0:  # uniform in [0, 1]
                    v = rng.random()
                elif kind == 1:  # blocks: near within, far between
                    v = rng.uniform(0.0, 0.6) if assign[i] == assign[j] else rng.uniform(0.4, 1.0)
                else:  # 1-D points: a metric with chains of neighbours
                    v = abs(centers[assign[i]] - centers[assign[j]]) + 0.3 * rng.random()
                d[i, j] = d[j, i] = v
        labels, safe = cluster(d)
        if safe:
            upper = [float(d[i, j]) for i in range(n) for j in range(i + 1, n)]
            cases.append({"n": n, "upper": upper, "labels": labels})
    return cases


def main():
    rng = random.Random(20250)
    out = {
        "generator": "tools/gen_bleu_fixture.py",
        "nltk": nltk.__version__,
        "sklearn": sklearn.__version__,
        "threshold": THRESHOLD,
        "bleu": bleu_cases(rng),
        "groups": group_cases(rng),
        "matrices": matrix_cases(rng),
    }
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
