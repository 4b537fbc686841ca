"""Audio bytes in and out: decode uploads to 16 kHz mono, fetch `url` audio, encode synthesized speech.

Plain functions over PyAV (FFmpeg's decoders and encoders, LGPL, loaded in-process); nothing here
knows about models, tiers or HTTP.
"""
