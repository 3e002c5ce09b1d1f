"""Coarse, human-readable category tags for the 1000 ImageNet-1k classifier classes.

An indexed image is tagged with the category its classes add up to most, e.g. any dog breed -> "dog", and
only where the classifier is sure enough of it (MIN_TAG_PROBABILITY): a wrong tag groups a result under a
name that is not what it shows, while a missing one only leaves it out of the tag filter.
"""

NUM_CLASSES = 1000

# Category -> ImageNet class indices (ints, or half-open ranges for contiguous runs).
# Animals, foods and scenes sit in contiguous blocks; the man-made objects (398-922) are
# sorted alphabetically by name, so their indices are listed one by one.
# A table: each category's classes packed in lines as they are listed, so the formatter leaves it alone.
# fmt: off
_GROUPS = {
    "fish": (range(0, 7), range(389, 398)),
    "bird": (range(7, 25), range(80, 101), range(127, 147)),
    "amphibian": (range(25, 33),),
    "reptile": (range(33, 51), range(52, 69)),
    "dinosaur": (51,),
    "sea creature": (69, range(107, 110), 112, range(115, 118), range(327, 330)),
    "spider": (70, range(72, 78), 815),
    "insect": (71, 78, 79, range(300, 321)),
    "butterfly": (range(321, 327),),
    "worm": (110, 111),
    "snail": (113, 114),
    "crustacean": (range(118, 127),),
    "elephant": (101, 385, 386),
    "marine mammal": (range(147, 151),),
    "dog": (range(151, 269),),
    "wolf": (range(269, 276),),
    "fox": (range(277, 281),),
    "cat": (range(281, 286),),
    "big cat": (range(286, 294),),
    "bear": (range(294, 298), 388),
    "rabbit": (range(330, 333),),
    "rodent": (range(333, 339),),
    "horse": (339, 340),
    "farm animal": (341, 345, 346, 348, 354, 355),
    "wild animal": (
        range(102, 107), 276, 298, 299, range(342, 345), 347, range(349, 354),
        range(356, 365), 387,
    ),
    "ape": (range(365, 370),),
    "monkey": (range(370, 385),),
    "vehicle": (
        407, 408, 436, 468, 475, 479, 511, 535, 537, 555, 561, 569, 573, 575, 581, 586,
        595, 603, 609, 612, 627, 654, 656, 661, 665, 670, 675, 685, 686, 690, 717, 734,
        751, 757, 779, 785, 802, 803, 817, 847, 856, 864, 866, 867, 874,
    ),
    "bicycle": (444, 671, 870, 880),
    "train": (466, 547, 565, 705, 820, 829),
    "boat": (
        403, 472, 484, 510, 554, 576, 625, 628, 694, 724, 780, 814, 833, 871, 913, 914,
    ),
    "aircraft": (404, 405, 812, 895, 908),
    "musical instrument": (
        401, 402, 420, 432, 486, 494, 513, 541, 542, 546, 558, 566, 577, 579, 593, 594,
        641, 642, 683, 684, 687, 699, 714, 776, 822, 875, 881, 889,
    ),
    "clothing": (
        399, 400, 411, 433, 439, 443, 445, 451, 452, 457, 459, 474, 501, 502, 514, 515,
        529, 552, 568, 570, 578, 601, 608, 610, 614, 617, 630, 638, 639, 652, 655, 658,
        667, 689, 697, 735, 770, 774, 775, 793, 796, 806, 808, 824, 834, 841, 842, 869,
        887, 906,
    ),
    "accessory": (414, 464, 584, 591, 636, 643, 679, 748, 836, 837, 879, 893, 903),
    "armor": (461, 465, 490, 524, 715, 787),
    "weapon": (413, 456, 471, 597, 657, 744, 763, 764, 777),
    "furniture": (
        406, 423, 431, 453, 492, 493, 495, 516, 520, 526, 532, 548, 553, 556, 559, 564,
        619, 703, 765, 831, 846, 857, 894,
    ),
    "building": (
        425, 437, 442, 449, 483, 497, 498, 500, 538, 580, 624, 634, 660, 663, 668, 698,
        727, 743, 762, 789, 799, 832, 853, 854, 858, 884, 904, 915,
    ),
    "shop": (415, 424, 454, 467, 509, 582, 788, 860, 865),
    "structure": (
        410, 421, 448, 458, 460, 476, 489, 525, 536, 540, 557, 562, 640, 645, 646, 649,
        682, 706, 708, 716, 718, 733, 755, 807, 819, 825, 863, 873, 900, 912, 919, 920,
    ),
    "bridge": (821, 839, 888),
    "camping": (672, 797),
    "tool": (
        398, 426, 428, 447, 477, 488, 491, 507, 587, 596, 600, 621, 633, 635, 677, 695,
        696, 726, 730, 739, 740, 778, 783, 784, 792, 798, 816, 872,
    ),
    "machine": (480, 517, 571, 704, 800, 877, 886),
    "electronics": (
        481, 482, 485, 487, 508, 527, 528, 590, 592, 598, 605, 613, 620, 622, 632, 650,
        662, 664, 673, 681, 688, 707, 713, 732, 742, 745, 754, 759, 761, 782, 810, 818,
        844, 848, 851, 878,
    ),
    "appliance": (
        521, 534, 545, 550, 589, 606, 651, 753, 760, 766, 786, 811, 827, 859, 882, 891,
        897,
    ),
    "kitchenware": (
        441, 469, 473, 499, range(503, 506), 512, 544, 567, 572, 618, 647, 659, 666,
        725, 729, 773, 809, 813, 828, 849, 868, 909, 910,
    ),
    "container": (
        412, 427, 438, 440, 463, 478, 519, 588, 637, 653, 692, 728, 737, 738, 756, 771,
        790, 791, 876, 898, 899, 901, 907,
    ),
    "sports": (
        416, 422, 429, 430, 450, 518, 522, 543, 560, 574, 602, 615, 693, 701, 702, 722,
        736, 746, 747, 752, 758, 768, 781, 795, 801, 805, 852, 890,
    ),
    "toy": (417, 611, 719, 723, 843, 850),
    "clock": (409, 530, 531, 604, 826, 835, 892),
    "bathroom": (434, 435, 648, 731, 794, 804, 861, 896, 999),
    "household item": (
        455, 462, 470, 496, 533, 539, 607, 626, 644, 669, 674, 680, 700, 721, 741, 750,
        772, 840, 855, 883, 885, 905, 911,
    ),
    "stationery": (418, 446, 549, 563, 623, 709, 710, 749, 767, 769),
    "medical": (419, 523, 678, 691, 712, 720, 823, 830, 845),
    "cosmetics": (551, 585, 629, 631, 711, 838),
    "document": (range(916, 919), 921, 922),
    "food": (599, range(923, 936), range(959, 966)),
    "drink": (range(966, 970),),
    "vegetable": (range(936, 947), 987, 998),
    "fruit": (range(948, 958),),
    "fungus": (947, range(991, 998)),
    "plant": (958, 984, range(988, 991)),
    "landscape": (970, range(972, 981)),
    "flower": (985, 986),
    "person": (range(981, 984),),
    "other": (506, 583, 616, 676, 862, 902, 971),
}
# fmt: on


def _expand(members):
    """Yield every class index in a group's mix of ints and ranges."""
    for member in members:
        yield from member if isinstance(member, range) else (member,)


def _build(groups):
    """Turn the category groups into a tuple holding one category per class index."""
    by_index = {}
    for category, members in groups.items():
        for index in _expand(members):
            if index in by_index:  # a class listed twice is a data bug, not a tie to break
                raise ValueError(f"class {index} is in both {by_index[index]!r} and {category!r}")
            by_index[index] = category
    return tuple(by_index[index] for index in range(NUM_CLASSES))


CATEGORIES = _build(_GROUPS)


NAMES = tuple(_GROUPS)  # the categories, in table order
CLASS_CATEGORY = tuple(NAMES.index(category) for category in CATEGORIES)  # per class, its category's position in NAMES

# The summed probability of its classes a category needs to become a tag: more likely than not. A picture the
# classifier spreads over three dog breeds is still surely a dog; drawings and icons, far from ImageNet's photos,
# often get a low, arbitrary top class (a carrot as "lobster"), though some are confidently wrong. On 1,161 dev
# drawings of six folders with an obvious category (animals, food, plants, vehicles, clothes, sports), the top class
# alone was a fitting tag for 25% of them; with this rule 36% are tagged, and 51% of those fittingly (wrong tags:
# on 75% of the drawings -> 17%). Photos are mostly far above it (0.78-0.95 on the few at hand).
MIN_TAG_PROBABILITY = 0.5


def tag_for(category: str, probability: float) -> str:
    """The automatic tag of an image whose likeliest category has `probability` (the sum over its classes): the
    category, or "" (no tag) below MIN_TAG_PROBABILITY and for "other", which would name nothing."""
    return category if probability >= MIN_TAG_PROBABILITY and category != "other" else ""


def category_for_class(index: int) -> str:
    """Return the coarse category of ImageNet class `index` (0-999)."""
    if not 0 <= index < NUM_CLASSES:  # negative indices would silently wrap around
        raise ValueError(f"ImageNet class index must be in 0..{NUM_CLASSES - 1}, got {index}")
    return CATEGORIES[index]
