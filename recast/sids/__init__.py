"""An item tokenizer learnt in this project: item text -> semantic IDs by residual k-means (issue 16).

``tokenizer`` (the :class:`ItemTokenizer`, and what ``assign`` guarantees), ``features`` (text -> vectors),
``kmeans`` and ``residual`` (the quantiser), ``store`` (save and load a fitted tokenizer).
"""
