"""The seed tutorial's training script: a Keras Dense 64-64-10 on scikit-learn's digits.

This is the classic guide's code as a data scientist writes it, kept here so the benchmark
can compare ferry with the service the guide builds (``app.py``). It trains on the 8x8
digit images that scikit-learn ships (no download) and saves ``my_model.h5`` in the
current directory. ferry's own ``ferry demo`` trains the same network (ferry.demo).

    python train.py            # -> my_model.h5
    ferry import my_model.h5 --name digits
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tensorflow import keras

x, y = load_digits(return_X_y=True)
x = x / 16.0  # pixel values 0..16 -> 0..1
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.2, random_state=0, stratify=y
)

keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10),
])
model.compile(
    optimizer="adam",
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test accuracy: {accuracy:.4f}")

model.save("my_model.h5")
