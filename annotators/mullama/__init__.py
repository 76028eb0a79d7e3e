"""MU-LLaMA (shansongliu/MU-LLaMA): the model, its release files, and the music-caption backend."""
