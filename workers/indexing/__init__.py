"""How an image enters the index, as a pipeline of threads over a task's images (jobs.py composes it):

    decode.py    read the file: EXIF-upright RGB, the model's input tensor, a thumbnail   (decode threads)
    features.py  its copy evidence: SIFT keypoints, 16x16 signature, visual words        (decode threads)
    embed.py     the model's forward pass over batches, the decode threads ahead of it    (the task's thread)
    store.py     vectors, evidence, thumbnail, tag and status in one transaction a batch  (the store thread)

The decode threads run niced below the model's thread and the store thread writes a batch while the model embeds
the next, so on two cores the model keeps its core (bench/indexing.py measures the pipeline against the bare forward).
"""
