# Independent SSIM reference (Wang et al. 2004), skimage convention gaussian_weights=True,
# sigma=1.5, win 11, use_sample_covariance=False, K1=0.01, K2=0.03; direct windowed sums.
import numpy as np
def img(C, H, W):
    c, i, j = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    x = (0.5 + 0.4 * np.sin(0.37 * i + 0.23 * j + 1.1 * c)).astype(np.float32).astype(np.float64)
    y = (0.8 * (0.5 + 0.4 * np.sin(0.37 * i + 0.23 * j + 1.1 * c)) + 0.1
         + 0.05 * np.cos(0.9 * i - 0.4 * j + 0.3 * c)).astype(np.float32).astype(np.float64)
    return x, y
def ssim(x, y, R):
    r = np.arange(-5, 6)
    g = np.exp(-r**2 / (2 * 1.5**2)); g /= g.sum()
    w = np.outer(g, g)
    C1, C2 = (0.01 * R)**2, (0.03 * R)**2
    out = []
    for c in range(x.shape[0]):
        vals = []
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                a = x[c, i:i+11, j:j+11]; b = y[c, i:i+11, j:j+11]
                mx, my = (w*a).sum(), (w*b).sum()
                vx = (w*a*a).sum() - mx*mx; vy = (w*b*b).sum() - my*my; vxy = (w*a*b).sum() - mx*my
                vals.append((2*mx*my + C1) * (2*vxy + C2) / ((mx*mx + my*my + C1) * (vx + vy + C2)))
        out.append(np.mean(vals))
    return np.mean(out)
x, y = img(2, 16, 20)
print(repr(ssim(x, y, 1.0)), repr(ssim(x, x, 1.0)), repr(ssim(x, y, 2.0)))
