"""Image classification: ViT / timm backbones with the pooled classification head.

``formats`` holds the adapters (imagefolder, csv, cifar10/100, in-memory arrays), ``builtin`` the
built-in Fashion-MNIST and digits sets; ``transforms`` builds the train/eval pipelines from a config
stored with the model.
"""
