"""Train MobileNetV3_Small_BoT: the same as `paddyclf train --model MobileNetV3_Small_BoT`.

See README.md for the flags and the data layout.
"""

from paddyclf.cli import train_script

if __name__ == "__main__":
    train_script("MobileNetV3_Small_BoT")
