// Sign-in with a dashboard token or an AWS access key pair (the same ones the CLI uses).
import { h } from '../dom';
import type { PageContext } from '../page';
import { signIn, type Credentials, type Session } from '../session';

export function renderSignIn(context: PageContext, onSignedIn: (session: Session) => void): void {
  context.setTitle('Sign in');
  const error = h('p', { id: 'signin-error', role: 'alert', className: 'error' });
  const token = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password' });
  const keyId = h('input', { id: 'access-key-id', name: 'access-key-id', type: 'text', autocomplete: 'username', spellcheck: 'false' });
  const secret = h('input', { id: 'secret-access-key', name: 'secret-access-key', type: 'password', autocomplete: 'off' });
  const submit = h('button', { type: 'submit' }, 'Sign in');

  const form = h(
    'form',
    { id: 'signin', className: 'stack narrow', novalidate: true },
    h('p', {}, 'Use a dashboard token from the tokens file, or an access key from the credentials file.'),
    h('fieldset', {},
      h('legend', {}, 'Token'),
      h('label', { for: 'token' }, 'Token'),
      token,
    ),
    h('fieldset', {},
      h('legend', {}, 'Or an access key'),
      h('label', { for: 'access-key-id' }, 'Access key ID'),
      keyId,
      h('label', { for: 'secret-access-key' }, 'Secret access key'),
      secret,
    ),
    submit,
    error,
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    let credentials: Credentials;
    if (token.value.trim()) {
      credentials = { token: token.value.trim() };
    } else if (keyId.value.trim() && secret.value) {
      credentials = { access_key_id: keyId.value.trim(), secret_access_key: secret.value };
    } else {
      error.textContent = 'Enter a token, or an access key ID and its secret.';
      return;
    }
    submit.disabled = true;
    try {
      const session = await signIn(credentials);
      onSignedIn(session);
    } catch (failure) {
      error.textContent = (failure as Error).message;
    } finally {
      submit.disabled = false;
    }
  });

  context.main.append(h('h1', {}, 'Sign in to Nimbus'), form);
  token.focus();
}
