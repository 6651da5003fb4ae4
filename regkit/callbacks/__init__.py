"""Lightning callbacks that make pictures and logs (attention maps, GAN sample grids)."""
