"""The face path shared by training, evaluation, live and the server: detect, align, crop."""
