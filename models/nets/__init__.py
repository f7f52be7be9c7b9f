"""The families' networks: plain ``nn.Module``s that know nothing of Lightning, losses or capabilities.

One file per architecture, named after it: ``resnet`` (ResNet classifier), ``conv`` (the VAE's
convolutional encoder and decoder), ``gan`` (spectral-norm generator, projection discriminator,
encoder), ``pixelcnn`` (gated PixelCNN), ``unet`` (the diffusion ε-network), ``ema`` (an
exponential moving average of a network's weights), ``chain`` (the forward-backward algorithm of
the HMM and the hidden-state CRF), ``trees`` (fitted decision trees as padded tensors, traversed in
torch).
"""
