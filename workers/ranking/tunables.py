"""Every number the ranking was tuned with, each with the measurement that chose it (docs/retrieval.md has the
detail; `make bench` the current figures). A constant here that no measurement supports is a candidate for removal.

"Copies" below is bench/copy_detection.py: edited copies of dev images searched through this package; "combined"
its copies with three edits at once; "at scale" its photo set indexed among 3,000 other dev images.
"""

# --- The global vector: a projection learned from the index (workers/projection.py) ------------------------------
PCA_DIMS = 256  # bench/quality.py: P@10 0.332 against 0.319 raw (PCA-whitened 128 / 512: 0.330 / 0.322); not swept
LDA_DIMS = 128  # bench/quality.py: PCA256 + tag LDA128 at BETA 0.3, P@10 0.391 against 0.332 (cross-fitted); not swept
BETA = 0.3  # the tag LDA's weight in the cosine: bench/quality.py, kinds nobody tagged still 0.344 vs 0.303; not swept
LDA_REGULARISATION = 0.3  # within-tag scatter += this x its mean eigenvalue; not swept
MIN_IMAGES_PER_TAG = 10  # rarer tags carry too little to estimate a class's scatter from; not swept
MAX_TAG_SHARE = 0.5  # a tag on more than half the tagged images separates little; not swept
MAX_FIT_VECTORS = 50_000  # a sample this large pins 1,280-d covariances down; more only costs learning time (a cap)
# The copy space: what edits do to a vector, whitened away (Radenovic et al.'s learned whitening). Copies at scale,
# seeds 0 and 1, global recall@1 of combined copies: 256 / 0.3 86 and 78 of 100; 256 / 0.1 83, 78; 512 / 0.1 86, 77;
# 128 / 0.1 83, 73; the PCA part 74, 67.
COPY_DIMS = 256
COPY_REGULARISATION = 0.3
COPY_PAIRS = 1500  # a minute of a worker to embed; copies at scale: 1,500 pairs 951, 3,404 953, 6,404 956 of 1,000

# --- Candidates: where a search looks, beside the global k-NN (settings.IMGSEARCH_RERANK_CANDIDATES, 20) -----------
SIGNATURE_SIDE = 16  # the 16x16 grey thumbnail survives shrinking to a few dozen pixels; 256-d fits an HNSW index
# Signature correlation that counts as the same picture: combined photo copies, seeds 0 / 1 / 2, 0.90 instead found
# 97 / 94 / 93 originals first of 100 against 96 / 94 / 92, but marked 7 / 15 / 12 false copies against 1 / 7 / 4.
SIGNATURE_COPY = 0.95
WORDS_FOUND = 5  # copies at scale, seeds 3 and 4: 0 / 3 / 5 / 10 / 20 found 176 / 180 / 180 / 180 / 182 of 200 first
WORDS_EF_SEARCH = 100  # the words' sparse graph (m=8): the exact 5 nearest for 100 of 100 queries among 3,405 images
COPY_SPACE_FOUND = 5  # nearest in the copy space: copies at scale, 1 / 3 / 5 / 10 / 20 gave 946 / 948 / 951 / 950 / 951
IDENTICAL_SCORE = 0.999  # the very file uploaded embeds to its own vector: cosine 1 up to float rounding

# --- Verification: SIFT keypoints and a RANSAC similarity transform (workers/ranking/verification.py) -------------
WORK_SIDE = 256  # longer side keypoints are found at: copies, against 384 and 512 px (figures not kept); 192: below
# (side, keypoints kept): a second, smaller size finds blurred and shrunk copies. 192 / 96 px for indexed images: SIFT
# 17.2 -> 10.5 ms an image, but the quality part's copy recall@1 0.961 -> 0.948 and the mixed set's 0.976 -> 0.972.
SCALES = ((256, 256), (128, 128))
SIFT_LAYERS = 3  # OpenCV's default octave layers, named for CONTRAST_THRESHOLD's arithmetic
# OpenCV's default 0.04 finds too few keypoints on blurred and faded copies; 0.0236 is the smallest threshold whose
# pre-filter skips sub-grey-level ripples: on 200 dev images 98.9% of the keypoints stay and SIFT takes 14.5 instead
# of 26.8 ms at 256 px, copy recall@1 unchanged against 0.02.
CONTRAST_THRESHOLD = 0.0236
RATIO = 0.8  # Lowe's ratio test, his paper's value; not swept here
RANSAC_PX = 4.0  # inlier distance in WORK_SIDE pixels; not swept
RANSAC_ITERATIONS = 1000  # not swept; uncapped: all RANSAC is ~2 ms of a photo search (bench/verify_cost.py --profile)
MIN_MATCHES = 6  # fewer ratio-test matches cannot reach MIN_INLIERS anyway; it saves RANSAC's time on them
MIN_INLIERS = 10  # a verified copy: the copies part's table of recall@1 and false "copy" marks at 6 to 30 inliers
# Candidates whose descriptors of one size go into one product with the query's (verification.match_many); 0: one
# candidate at a time. bench/verify_cost.py --batches, a photo search's ~23 candidates: median 12.7 / 8.2 / 5.0 / 4.3
# / 4.1 / 4.1 ms at 1 / 2 / 4 / 8 / 16 / 32 per product (135 searches, 2 busy cores), the same inliers at each; 8 is
# within 5% of the best and bounds the similarities to 8 x 256 x 512 floats (4 MB) however many candidates there are.
MATCH_BATCH = 8
# The decoded query is box-shrunk by whole factors to no less than this longer side before its keypoints, signature
# and working image are computed (None: from the full decoded image). verification._working_grey made the same shrink
# for the 256-pixel keypoints anyway, so those are unchanged; a photo of 1,000 to 3,000 pixels was otherwise converted
# and resized whole three times. bench/verify_cost.py --profile, photos of a median 1,366 px: the query's signature
# 7.5 -> 0.9 ms, its working image 6.5 -> 1.2 ms (cProfile's inflated figures), every first result the same.
QUERY_SIDE = 2 * WORK_SIDE

# --- Visual words (workers/ranking/words.py) -----------------------------------------------------------------------
# Centroids: 15 x 128 = 1,920 dimensions, the most whole words under pgvector 0.6's 2,000 for an HNSW index (chosen then;
# 0.8's halfvec allows 4,000, not measured); 16 and 32 words, or 64 projected to 512 or 1,024, were within a few
# queries of it (copies at scale, seeds 0 and 1).
WORDS = 15
# A vocabulary is learned from at most this many images' keypoints, a random sample of the index: copies at scale,
# seeds 0 to 2, one from 1,000 random images put 229 of 300 originals among the words' 5, one from 200 of a kind 212.
WORDS_FIT_IMAGES = 1000
WORDS_FIT_DESCRIPTORS = 100_000  # and at most this many of their descriptors: plenty for 15 centroids
KMEANS_ATTEMPTS = 3  # OpenCV k-means restarts, the best kept; not swept

# --- Fusion: the order of the results (workers/ranking/fusion.py) ----------------------------------------------------
# Cosine credited per inlier below MIN_INLIERS when picking the lead of the candidates that are not copies: combined
# copies of seeds 1 and 2 (150 per set), 0.02 took recall@1 from 0.91 / 0.87 (photo) and 0.89 / 0.88 (mixed) to 0.93 /
# 0.90 and 0.91 / 0.91; deciding the lead only, it leaves the unrelated queries' category precision@10 as it was.
INLIER_WEIGHT = 0.02
# Cosine credited per unit of signature likeness in picking that lead: combined copies of seeds 3 and 4, 0 / 0.02 /
# 0.05 / 0.1 / 0.2 / 0.3 gave photo 190 / 191 / 191 / 191 / 192 / 192 and mixed 181 / 182 / 182 / 184 / 184 / 185 of
# 200; the smaller of the two best, and on seeds 0 to 2 (not used to choose) photo 282 -> 287 of 300.
SIGNATURE_WEIGHT = 0.2

# --- The "Same picture" verdict (workers/ranking/appearance.py) ------------------------------------------------------
# Chosen on bench/badges.py's seed 0 (753 drawings and symbols and 500 EmojiOne emoji indexed; as queries that copy
# nothing, 1,000 held-out drawings, 500 Noto emoji and 125 photos; 300 three-edit copies of indexed images), replayed
# offline on the pairs of 10 or more inliers; seed 1 (another split, other copies) was kept to check, not to choose.
# False badges per 1,000 drawings / copies badged first, of 300: DISTINCT_RATIO 2 -> 5 to 8 / 62 to 79, 3 -> 1 / 49
# to 61. HUE_TURN 15 / 30 / 60: 1 / 1 / 2 (a flag on its neighbour's in another red) and 49 / 52 / 56. ACHROMATIC 8 /
# 12 / 16: 1 / 1 / 1 and 57 / 59 / 61. AGREEMENT_BLOCKS 4 / 8 (at tolerances 0.4 to 0.6): seed 0 1 / 1 and 61-69 /
# 51-62, seed 1 3 / 2 (a car rental sign on the taxi's: one differing block in 16 is too little) and 66-72 / 62-65.
# Then bench/badges.py gained its variants (the other files of an indexed drawing's family), and the rules were
# replayed the same way on the pairs that pass the distinct check, seeds 0 and 1 (about 650 drawings and 500 emoji
# indexed; 530 held-out drawings, 170 variants, 500 Noto emoji, 125 photos; false badges of both seeds together, then
# copies badged of their 600): AGREEMENT_BLOCKS 8 -> 16 (tolerance 0.6) 15 -> 8, 144 -> 121. 16 x 16 blocks tell a
# clock's other hour, the barber's sign from the beauty salon's (a man for a woman), a cloud tracing without its
# skyline, two tracings of one lightning (of 16 verified pairs of star polygons of one point count, 11 -> 4 passed).
# Left were the same drawing in other colours, which a colour edit makes too: so the badge now wants the same colours
# and tones. No hue turn (HUE_TURN 30 -> 0): 8 -> 6, 121 -> 110; a grey query no longer matching a coloured picture:
# 6 -> 4, 110 -> 74; TONE_TOLERANCE 10 / 15 / 20: 1 / 1 / 2 and 60 / 67 / 70. The one left is another drawing of the
# Brazilian flag; at 20 a pictogram turned into another sign (AIGA departing flights) passes too.
DISTINCT_RATIO = 3  # a badged copy fits the query this many times better than any other candidate (more inliers)
AGREEMENT_RESOLUTION = 32  # pixels of the longer side the images are compared at, after...
AGREEMENT_BLUR = 2.0  # ...a Gaussian blur of this sigma at WORK_SIDE: blur and re-encoding edits count little
AGREEMENT_BLOCKS = 16  # the comparison's grid (16 x 16 blocks): one block that differs is a different picture
LIGHTNESS_TOLERANCE = 0.6  # mean difference of a block's normalised lightness (in standard deviations) that passes
TONE_TOLERANCE = 15.0  # mean difference of a block's lightness (Lab L, 0 to 100) that passes: the same tones
HUE_TOLERANCE = 15  # degrees, 90th percentile of the hue difference where the query is coloured
# The query's drawing within the candidate: of the badged copies of seeds 0 and 1 above, the share of the query's edges
# covered was 0.941 at least (turned copies, their filled corners at the frame's edge); the AIGA barber's and beauty
# salon's signs on the sign of scissors and comb alone (seed 2: their figure outside it) 0.78 and 0.74.
COVERED = 0.9
EDGE = 5.0  # Lab lightness change between neighbouring pixels at AGREEMENT_RESOLUTION that makes an edge; not swept
ACHROMATIC = 16.0  # Lab chroma under which a pixel counts as grey (JPEG at quality 40 puts up to 17 on a blurred grey)
COLOURED_SHARE = 0.02  # a picture with fewer coloured pixels than this share of the region compared counts as grey
