"""segact: which output activation, head and loss should a binary segmentation network use?"""

__version__ = "0.1.0"
